"""Training runs from configs: Python equals the command, --config files, the self-refinement order, where the
Localizer starts, the warning of a run that cannot learn and the hint for missing videos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.register_assert_rewrite("training_support")
from training_support import (  # noqa: E402
    FAST,
    TINY,
    cli,
    fresh_runtime,
    part,
    runner,
    same,
    samples_of,
    snapshot,
    tiny_blip2_folder,
)

from sevila_tools.cli.app import app  # noqa: E402
from sevila_tools.errors import InputError  # noqa: E402
from sevila_tools.loading import load_runtime  # noqa: E402
from sevila_tools.tiny import tiny_model  # noqa: E402
from sevila_tools.training import (  # noqa: E402
    SelfRefineRun,
    SelfRefineRunConfig,
    Trainer,
    TrainRunConfig,
    batch_layout,
    learning_warning,
    load_run_config,
    pseudo_label,
    read_labels,
    read_training_checkpoint,
    resolve_config,
    run_self_refine,
    run_train,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run faster on one thread
SMALL = {"epochs": 1, "batch_size": 2, "global_batch": 2, "lr": 3e-2, "min_lr": 3e-2, "warmup_steps": 0}


def base(train_data: Path) -> list[str]:
    return ["-d", "nextqa", "--annotations", str(train_data / "ann.json"), "--videos", str(train_data / "videos"), *TINY]


def as_localizer(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Answerer-branch tensors under the Localizer's names (qformer. -> qformer_loc., ...)."""
    from sevila_tools.training.localizer_init import localizer_key

    return {localizer_key(k): v for k, v in sd.items()}


# ------------------------------------------------------------------------------------------------ Python = CLI
def test_python_run_gives_the_commands_summary_metrics(train_data, tmp_path):
    cli("refine", *base(train_data), "--labels", str(train_data / "labels.jsonl"), "--out", str(tmp_path / "cli"),
        "--epochs", "2", "--batch-size", "2", "global_batch=2", *FAST)
    cfg = TrainRunConfig(task="refine", dataset="nextqa", annotations=train_data / "ann.json", videos=train_data / "videos",
                         out=tmp_path / "py", labels=train_data / "labels.jsonl", model="tiny-random", device="cpu",
                         hparams={**SMALL, "epochs": 2})
    result = run_train(cfg, progress=False)
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("cli", "py"))
    assert one["command"] == "refine" and two["command"] is None
    for key in ("steps", "epochs_completed", "complete", "batch", "deviations", "data", "sources"):
        assert one[key] == two[key], key
    assert one["epoch_losses"] == pytest.approx(two["epoch_losses"], rel=1e-6) and len(one["epoch_losses"]) == 2
    assert one["last_loss"] == pytest.approx(result.last_loss, rel=1e-6)
    hp1, hp2 = (dict(s["hparams"], start_checkpoint=None) for s in (one, two))
    assert hp1 == hp2


def test_config_file_and_key_value_overrides(train_data, tmp_path):
    file = tmp_path / "ft.yaml"
    file.write_text(f"dataset: nextqa\nannotations: {train_data / 'ann.json'}\nvideos: {train_data / 'videos'}\n"
                    f"model: tiny-random\ndevice: cpu\nout: {tmp_path / 'ft'}\nlimit: 2\nnum_frames: 8\n"
                    "num_keyframes: 2\nlr: 0.01\n"
                    "hparams: {batch_size: 2, global_batch: 2}\n")
    res = json.loads(cli("finetune", "--config", str(file), "epochs=1", "warmup_steps=0", "--quiet", "--json").stdout)
    hp = res["hparams"]
    assert (hp["lr"], hp["epochs"], hp["num_frames"], hp["batch_size"], hp["num_samples"]) == (0.01, 1, 8, 2, 2)
    cfg = load_run_config(TrainRunConfig, file, ["limit=1", "seed=3"], task="finetune", out=tmp_path / "x")
    assert (cfg.limit, cfg.out, cfg.hparams["seed"], cfg.hparams["lr"]) == (1, tmp_path / "x", 3, 0.01)
    bad = runner.invoke(app, ["finetune", "--config", str(file), "epoch=2", "--quiet"])
    assert bad.exit_code == 2 and "did you mean epochs" in bad.stderr
    missing = runner.invoke(app, ["finetune", *TINY, "--annotations", str(train_data / "ann.json"), "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "--dataset" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------ where the Localizer starts
def test_refine_starts_from_the_base_qformer_whatever_answerer_is_loaded(train_data, tmp_path):
    rt = fresh_runtime()
    with torch.no_grad():
        for p in rt.model.qformer.parameters():
            p.add_(0.25)  # a fine-tuned Answerer, as after `sevila finetune`
    tuned = snapshot(rt.model)
    trainer = Trainer(rt, samples_of(train_data), resolve_config("refine", "nextqa", overrides=SMALL), tmp_path / "r",
                      progress=False)
    assert trainer.cfg.init == "base"  # the recipe default (official load_qformer_loc())
    trainer.setup()
    trainer.init_branch()
    start = part(snapshot(rt.model), "localizer")
    assert same(start, as_localizer(part(snapshot(tiny_model()), "answerer")))
    assert not same(start, as_localizer(part(tuned, "answerer")))
    assert trainer.sources["localizer"] == "base Q-Former of tiny-random (seeded)"
    copy = Trainer(rt, samples_of(train_data), resolve_config("refine", "nextqa", overrides={**SMALL, "init": "answerer-copy"}),
                   tmp_path / "c", progress=False)
    copy.setup()
    copy.init_branch()
    assert same(part(snapshot(rt.model), "localizer"), as_localizer(part(tuned, "answerer")))


def test_base_qformer_is_read_from_a_blip2_folder(tmp_path):
    """The HF BLIP-2 layout: Q-Former, query tokens, projection and post_layernorm (= LAVIS ln_vision)."""
    from sevila_tools.training import load_base_localizer

    hf = tiny_blip2_folder(tmp_path / "blip2", seed=1)
    rt = load_runtime(str(tmp_path / "blip2"), checkpoint="none", device="cpu")
    with torch.no_grad():
        rt.model.qformer.encoder.layer[0].attention.output.dense.weight.mul_(3.0)
        rt.model.ln_vision_loc.weight.zero_()
    source = load_base_localizer(rt.model, rt.info)
    m = rt.model
    assert source == f"BLIP-2 Q-Former of the base model {tmp_path / 'blip2'}"
    assert torch.equal(m.ln_vision_loc.weight, hf.vision_model.post_layernorm.weight)
    assert torch.equal(m.query_tokens_loc, hf.query_tokens)
    assert torch.equal(m.qformer_loc.encoder.layer[0].attention.output.dense.weight,
                       hf.qformer.encoder.layer[0].attention.output.dense.weight)
    assert not torch.equal(m.qformer_loc.encoder.layer[0].attention.output.dense.weight,
                           m.qformer.encoder.layer[0].attention.output.dense.weight)


# ------------------------------------------------------------------------------------------------ self-refinement
def sr_config(train_data: Path, out: Path, **kw) -> SelfRefineRunConfig:
    hp = {**SMALL, "augment": False, "frozen_dropout": False, "finetune.num_frames": 8, "num_keyframes": 2,
          "val_frames": 8, "pretrain.val_frames": 8, **kw.pop("hparams", {})}
    return SelfRefineRunConfig(dataset="nextqa", annotations=train_data / "ann.json", videos=train_data / "videos", out=out,
                               model="tiny-random", device="cpu", limit=2, hparams=hp, **kw)


def test_self_refine_runs_the_papers_order(train_data, tmp_path):
    """pre-train (validated, best kept) -> labels from the zero-shot Answerer -> refine the pre-trained
    Localizer -> fine-tune the Answerer on the refined Localizer's keyframes."""
    out = tmp_path / "sr"
    qvh = train_data / "qvh.jsonl"
    cfg = sr_config(train_data, out, pretrain_annotations=qvh, pretrain_val_annotations=qvh,
                    val_annotations=train_data / "ann.json")
    res = run_self_refine(cfg, progress=False)
    it = res.iterations[0]
    assert res.order == "paper" and it["order"] == ["pretrain", "labels", "refine", "finetune"] and res.complete
    assert it["pretrain"]["best"] is not None and it["pretrain"]["weights"].endswith("checkpoint_best.pth")
    # the labels are the zero-shot Answerer's: the same file from a fresh model
    refine_cfg = SelfRefineRun(cfg).stage_configs()["refine"]
    pseudo_label(fresh_runtime(), samples_of(train_data)[:2], tmp_path / "zero", refine_cfg, progress_bar=False)
    mine = read_labels(out / "iter_1" / "labels" / "pseudo_labels.jsonl")
    assert mine == read_labels(tmp_path / "zero" / "pseudo_labels.jsonl")
    ref = read_training_checkpoint(out / "iter_1" / "refine" / "checkpoint.pth")
    assert ref["hparams"]["init"] == "checkpoint"  # refines the pre-trained Localizer (the paper's PT+SR)
    log = (out / "iter_1" / "refine" / "train.log").read_text()
    assert "localizer initialised from: iter_1/pretrain (checkpoint_best.pth)" in log
    ft = read_training_checkpoint(out / "iter_1" / "finetune" / "checkpoint.pth")
    refined = read_training_checkpoint(Path(it["refine"]["weights"]))
    assert same(part(ft["model"], "localizer"), part(refined["model"], "localizer"))
    assert same(part(refined["model"], "answerer"), part(snapshot(fresh_runtime().model), "answerer"))
    assert res.checkpoint == it["finetune"]["weights"] and it["validation"] == it["finetune"]["final_validation"]


def test_self_refine_readme_order_is_an_option(train_data, tmp_path):
    out = tmp_path / "rd"
    res = run_self_refine(sr_config(train_data, out, order="readme"), progress=False)
    it = res.iterations[0]
    assert it["order"] == ["finetune", "labels", "refine"] and res.checkpoint == it["refine"]["weights"]
    ft = read_training_checkpoint(out / "iter_1" / "finetune" / "checkpoint.pth")
    ref = read_training_checkpoint(out / "iter_1" / "refine" / "checkpoint.pth")
    assert same(part(ref["model"], "answerer"), part(ft["model"], "answerer"))  # labelled by the fine-tuned one
    assert not same(part(ft["model"], "answerer"), part(snapshot(fresh_runtime().model), "answerer"))


def test_self_refine_stage_overrides(train_data, tmp_path):
    cfgs = SelfRefineRun(sr_config(train_data, tmp_path, hparams={"refine.init": "base", "finetune.lr": 1e-4})).stage_configs()
    assert (cfgs["refine"].init, cfgs["finetune"].lr, cfgs["pretrain"].lr) == ("base", 1e-4, 3e-2)
    assert cfgs["pretrain"].dataset == "qvhighlights" and cfgs["finetune"].num_frames == 8
    assert {"option": "init", "official": "base", "used": "checkpoint"} in SelfRefineRun(
        sr_config(train_data, tmp_path)).stage_configs()["refine"].deviations()
    with pytest.raises(InputError, match="unknown stage 'answer'"):
        SelfRefineRun(sr_config(train_data, tmp_path, hparams={"answer.lr": 1.0})).stage_configs()
    with pytest.raises(InputError, match="each stage's own recipe"):
        SelfRefineRun(sr_config(train_data, tmp_path, recipe="refine-nextqa")).stage_configs()


# ------------------------------------------------------------------------------------------------ warnings and hints
def test_a_run_that_cannot_learn_warns_once(train_data, tmp_path):
    layout = batch_layout(8, 1, global_batch=64, reference_processes=4)
    line = learning_warning(16, layout, 1, 3e-5, 0.0, 1e-8, 500)
    assert line is not None and line.startswith("warning: this run cannot learn: 1 optimizer step ")
    assert "lr 1.0e-08 at most" in line
    # the official schedule runs step 0 of epoch 0 at warmup_lr even without warm-up
    assert learning_warning(16, layout, 1, 3e-5, 0.0, 1e-8, 0) is not None
    assert learning_warning(16, batch_layout(2, 1, global_batch=2), 1, 3e-5, 0.0, 1e-8, 0) is None  # 8 steps
    assert learning_warning(16, layout, 2, 3e-5, 0.0, 1e-8, 500) is None  # epoch 2 runs the cosine at lr / 2
    assert learning_warning(6400, layout, 1, 3e-5, 0.0, 1e-8, 500) is None  # 100 steps reach 6e-6
    res = cli("finetune", *base(train_data), "--out", str(tmp_path / "w"), "--limit", "2", "--epochs", "1", "--frames", "8",
              "--keyframes", "2", "--quiet", "--json")
    warned = [x for x in res.stderr.splitlines() if x.startswith("warning:")]
    assert len(warned) == 1 and "1 optimizer step (2 questions, global batch 64, 1 epoch)" in warned[0]
    assert json.loads(res.stdout)["warnings"] == warned


def test_missing_videos_error_says_how_to_fix_it(train_data, tmp_path):
    args = ["refine", "-d", "nextqa", "--annotations", str(train_data / "ann.json"), *TINY, "--out", str(tmp_path / "m")]
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and len(res.stderr.strip().splitlines()) == 1
    assert "4 of 4 videos missing" in res.stderr and "pass --videos DIR" in res.stderr
    res = runner.invoke(app, [*args, "--videos", str(tmp_path), "--skip-missing"])
    assert res.exit_code != 0 and "--video-map" in res.stderr and not (tmp_path / "m").exists()
