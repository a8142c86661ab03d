"""The training commands: run folders, checkpoints that load everywhere, pseudo-label files, broken and short videos,
--dataset, --quiet/--json, plain progress lines, fp16 with a scaler, self-refinement and multi-process runs."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.register_assert_rewrite("training_support")
from training_support import (  # noqa: E402
    FAST,
    OPTIONS,
    QUESTION,
    TINY,
    cli,
    fresh_runtime,
    part,
    runner,
    same,
    samples_of,
    snapshot,
    step_rows,
)

from sevila_tools.cli.app import app  # noqa: E402
from sevila_tools.errors import VideoError  # noqa: E402
from sevila_tools.eval.datasets import load_annotations  # noqa: E402
from sevila_tools.loading import load_runtime  # noqa: E402
from sevila_tools.prompts import answerer_prompt, localizer_prompt  # noqa: E402
from sevila_tools.training import frame_seed, read_training_checkpoint  # noqa: E402
from sevila_tools.video import read_frames, sample_frames, sample_indices  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run faster on one thread
SEVILA = Path(sys.executable).parent / "sevila"


def base(train_data: Path, ann: str = "ann.json") -> list[str]:
    return ["-d", "nextqa", "--annotations", str(train_data / ann), "--videos", str(train_data / "videos"), *TINY]


# ------------------------------------------------------------------------------------------------ run folders
def test_refine_cli_run_folder_and_checkpoint_load_everywhere(train_data, tmp_path):
    out = tmp_path / "r"
    res = cli("refine", *base(train_data), "--labels", str(train_data / "labels.jsonl"), "--out", str(out), "--epochs", "2",
              "--batch-size", "2", "global_batch=2", "--set", "init=checkpoint", *FAST, "--json")
    summary = json.loads(res.stdout)
    assert summary["complete"] and summary["steps"] == 4 and summary["task"] == "refine" and res.stderr == ""
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["hparams"]["lr"] == 3e-2 and on_disk["hparams"]["init"] == "checkpoint"
    assert on_disk["command"] == "refine" and on_disk["versions"]["torch"] == torch.__version__
    assert {"option": "lr", "official": 3e-5, "used": 3e-2} in on_disk["deviations"]
    ckpt = out / "checkpoint.pth"
    assert on_disk["provenance"]["checkpoint"]["path"] == str(ckpt.resolve())
    import hashlib

    assert on_disk["provenance"]["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    for f in ("checkpoint.pth", "metrics.jsonl", "summary.json", "train.log"):
        assert stat.S_IMODE((out / f).stat().st_mode) == 0o644, f
    assert "localizer initialised from: tiny random init" in (out / "train.log").read_text()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(r["kind"] == "step" for r in rows)  # optimizer steps

    raw = torch.load(ckpt, map_location="cpu", weights_only=True)  # tensors and primitives only
    assert raw["format"] == "sevila_tools" and raw["stage"] == "refine" and raw["epoch"] == 2
    assert {"optimizer", "scheduler_state", "rng", "hparams", "step", "best"} <= set(raw)
    assert not any(k.startswith(("vision_model", "language_model")) for k in raw["model"])
    assert not list(out.glob(".*tmp*"))
    rt = load_runtime("tiny-random", checkpoint=str(ckpt), device="cpu")
    loaded, fresh = snapshot(rt.model), snapshot(fresh_runtime().model)
    assert same(part(loaded, "localizer"), part(raw["model"], "localizer"))
    assert not same(part(loaded, "localizer"), part(fresh, "localizer"))
    assert same(part(loaded, "answerer"), part(fresh, "answerer"))
    assert rt.info["checkpoint_meta"] == {"stage": "refine", "step": 4, "epoch": 2}
    video = train_data / "videos" / "v0.mp4"
    loc = json.loads(cli("localize", str(video), QUESTION, "-n", "8", "-k", "2", *TINY, "--checkpoint", str(ckpt),
                         "--json").stdout)
    yes, _ = rt.localizer_logits(rt.vit(sample_frames(str(video), 8).frames)[None], [localizer_prompt(QUESTION, [])])
    assert [f["score"] for f in loc["frames"]] == pytest.approx(yes[0].tolist(), abs=1e-5)
    bad = runner.invoke(app, ["refine", *base(train_data), "--out", str(out), "--quiet"])
    assert bad.exit_code == 2 and "--resume" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_dataset_is_required_and_overrides_are_checked(train_data, tmp_path):
    args = ["--annotations", str(train_data / "ann.json"), "--videos", str(train_data / "videos"), *TINY, "--out", str(tmp_path)]
    for command in ("refine", "finetune", "pseudo-label", "pretrain-localizer", "self-refine"):
        res = runner.invoke(app, [command, *args])
        assert res.exit_code == 2 and "--dataset" in res.output, command
    res = runner.invoke(app, ["finetune", *base(train_data), "--out", str(tmp_path / "x"), "epoch=2", "--quiet"])
    assert res.exit_code == 2 and "did you mean epochs" in res.stderr and not (tmp_path / "x").exists()


def test_pretrain_then_finetune_cli(train_data, tmp_path):
    pre = tmp_path / "p"
    res = cli("pretrain-localizer", "-d", "qvhighlights", "--annotations", str(train_data / "qvh.jsonl"), "--videos",
              str(train_data / "videos"), *TINY, "--out", str(pre), "--epochs", "1", "--batch-size", "2", "global_batch=2",
              "--no-augment", *FAST, "--json")
    summary = json.loads(res.stdout)
    assert summary["complete"] and summary["hparams"]["init"] == "base"
    assert summary["hparams"]["prompts"] == "query_relevance"
    samples = load_annotations("qvhighlights", train_data / "qvh.jsonl", videos_root=train_data / "videos")
    from sevila_tools.training import batch_layout, step_plan

    for row, step in zip(step_rows(pre), step_plan(4, batch_layout(2, 1, global_batch=2), 42, 0), strict=True):
        labels = []
        for p in step[0]:
            idx = sample_indices(60, 4, 30.0, mode="random", rng=np.random.default_rng(frame_seed(42, 0, samples[p].qid)))[0]
            labels += ["yes" if (0 <= i / 30 <= 0.5 or 1.0 <= i / 30 <= 1.5) else "no" for i in idx]
        assert row["positive_rate"] == pytest.approx(labels.count("yes") / len(labels))
    pre_ck = read_training_checkpoint(pre / "checkpoint.pth")
    fresh = snapshot(fresh_runtime().model)
    assert same(part(pre_ck["model"], "answerer"), part(fresh, "answerer"))
    assert pre_ck["sources"]["localizer"] == "base Q-Former of tiny-random (seeded)"
    assert same(part(pre_ck["model"], "localizer"), part(pre_ck["model"], "localizer"))
    ft = tmp_path / "f"
    res = json.loads(cli("finetune", *base(train_data), "--checkpoint", str(pre / "checkpoint.pth"), "--out", str(ft),
                         "--epochs", "1", "--batch-size", "2", "--accum-steps", "1", "--frames", "8", "--keyframes", "2",
                         "--limit", "2", "--beta2", "0.99", *FAST, "--json").stdout)
    assert res["complete"] and res["steps"] == 1 and res["hparams"]["num_samples"] == 2
    assert res["hparams"]["beta2"] == 0.99 and res["hparams"]["start_checkpoint"] == str(pre / "checkpoint.pth")
    ck = read_training_checkpoint(ft / "checkpoint.pth")
    assert same(part(ck["model"], "localizer"), part(pre_ck["model"], "localizer"))
    assert not same(part(ck["model"], "answerer"), part(fresh, "answerer"))


# ------------------------------------------------------------------------------------------------ pseudo-labels
def direct_prediction(rt, raw_frame: torch.Tensor, qa_text: str, n: int) -> int:
    """Single-frame teacher-forced answer with direct module/T5 calls (not through the runtime's input builder)."""
    m, tok = rt.model, rt.tokenizer
    with torch.no_grad():
        feats = m.ln_vision(raw_frame[None])
        q = m.qformer(query_embeds=m.query_tokens, encoder_hidden_states=feats).last_hidden_state[:, :32]
        q = m.language_projection(q)
        emb = m.language_model.get_input_embeddings()
        prefix = torch.tensor([tok("Frame: ", add_special_tokens=False).input_ids])
        text = torch.tensor([tok(qa_text, truncation=True, max_length=77).input_ids])
        embeds = torch.cat([emb(prefix), q, emb(text)], dim=1)
        option = tok("Option", add_special_tokens=False).input_ids[0]
        dec = torch.tensor([[m.config.text_config.decoder_start_token_id, option]])
        logits = m.language_model(inputs_embeds=embeds, decoder_input_ids=dec).logits[0, 1]
    letters = [tok(L, add_special_tokens=False).input_ids[0] for L in "ABCDE"[:n]]
    return int(logits[letters].argmax())


def test_pseudo_label_equals_direct_computation(train_data, tmp_path):
    out = tmp_path / "pl"
    res = cli("pseudo-label", *base(train_data), "--out", str(out), "--epochs", "2", "--seed", "3", "--no-augment",
              "--no-frozen-dropout", "--quiet", "--json")
    summary = json.loads(res.stdout)
    records = [json.loads(x) for x in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert len(records) == 8 and {r["epoch"] for r in records} == {0, 1}
    rt = fresh_runtime()
    samples = {s.qid: s for s in samples_of(train_data)}
    yes = 0
    for r in records:
        s = samples[r["qid"]]
        rng = np.random.default_rng(frame_seed(3, r["epoch"], s.qid))
        assert r["frame_indices"] == sample_indices(60, 4, 30.0, mode="random", rng=rng)[0]
        raw = rt.vit(read_frames(s.video, r["frame_indices"])[0])
        preds = [direct_prediction(rt, raw[j], answerer_prompt(QUESTION, OPTIONS), 3) for j in range(4)]
        assert r["predictions"] == preds and r["labels"] == ["yes" if p == s.answer else "no" for p in preds]
        yes += r["labels"].count("yes")
    assert summary["frames"] == 32 and summary["positive_rate"] == pytest.approx(yes / 32)
    assert json.loads((out / "summary.json").read_text())["config"]["frozen_dropout"] is False


def test_pseudo_label_sets_per_epoch_overwrite_and_resume(train_data, tmp_path):
    out = tmp_path / "pl"
    cli("pseudo-label", *base(train_data), "--out", str(out), "--frames", "2", "--quiet")
    records = [json.loads(x) for x in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert {r["epoch"] for r in records} == set(range(10))  # one label set per refine epoch of the recipe
    for qid in {r["qid"] for r in records}:  # fresh frames every epoch
        assert len({tuple(r["frame_indices"]) for r in records if r["qid"] == qid}) > 5
    again = runner.invoke(app, ["pseudo-label", *base(train_data), "--out", str(out), "--frames", "2", "--quiet"])
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    # a run killed after some chunks: --resume labels the rest and gives the same file
    full = (out / "pseudo_labels.jsonl").read_text()
    (out / "pseudo_labels.jsonl").unlink()
    (out / "parts").mkdir()
    (out / "parts" / "rank0.0.jsonl").write_text("".join(x + "\n" for x in full.splitlines()[:15]) + '{"qid": "cut')
    cli("pseudo-label", *base(train_data), "--out", str(out), "--frames", "2", "--quiet", "--resume")
    assert (out / "pseudo_labels.jsonl").read_text() == full
    cli("pseudo-label", *base(train_data), "--out", str(out), "--frames", "2", "--quiet", "--overwrite", "--epochs", "1")
    assert len((out / "pseudo_labels.jsonl").read_text().splitlines()) == 4


# ------------------------------------------------------------------------------------------------ bad data
@pytest.fixture
def broken(train_data, tmp_path) -> Path:
    """The scene data plus a fifth question whose .mp4 exists but is garbage."""
    d = tmp_path / "broken"
    shutil.copytree(train_data, d)
    (d / "videos" / "bad.mp4").write_bytes(b"\x00\x01 not a video " * 64)
    recs = json.loads((d / "ann.json").read_text())
    recs.append({**recs[0], "video": "bad", "qid": "CW_bad_9"})
    (d / "ann.json").write_text(json.dumps(recs))
    return d


def test_undecodable_video_is_skipped_and_counted(broken, tmp_path):
    for command, extra in (("refine", []), ("finetune", ["--frames", "8", "--keyframes", "2"]),
                           ("pseudo-label", ["--epochs", "1"])):
        args = [command, *base(broken), "--out", str(tmp_path / command), *extra, "--quiet"]
        if command != "pseudo-label":
            args += ["--epochs", "1", "--batch-size", "2", "global_batch=2"]
        bad = runner.invoke(app, args)
        assert bad.exit_code != 0 and "TypeError" not in bad.stderr and "bad.mp4" in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
        res = cli(*args, "--skip-missing", "--json")
        summary = json.loads(res.stdout)
        assert summary["data"]["unreadable_videos"] == 1 and summary["data"]["questions"] == 4, command


def test_decode_failure_during_a_run_is_one_error_or_a_skip(broken):
    from sevila_tools.training import load_item
    from sevila_tools.training.data import DrawSpec, Skipped

    sample = load_annotations("nextqa", broken / "ann.json", videos_root=broken / "videos")[-1]
    with pytest.raises(VideoError, match="question CW_bad_9"):
        load_item(sample, 4, 0, DrawSpec(4, 0))
    skipped = load_item(sample, 4, 0, DrawSpec(4, 0, skip_bad_videos=True))
    assert isinstance(skipped, Skipped) and skipped.reason == "undecodable" and "bad.mp4" in skipped.message


def test_short_videos_are_warned_counted_and_optionally_skipped(train_data, tmp_path):
    recs = [json.loads(x) for x in (train_data / "qvh.jsonl").read_text().splitlines()]
    recs[0]["duration"], recs[0]["relevant_windows"] = 150, [[100, 120]]  # the 2-s video is annotated as 150 s
    (tmp_path / "qvh.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    args = ["pretrain-localizer", "-d", "qvhighlights", "--annotations", str(tmp_path / "qvh.jsonl"), "--videos",
            str(train_data / "videos"), *TINY, "--epochs", "1", "--batch-size", "2", "global_batch=2", "--json"]
    res = cli(*args, "--out", str(tmp_path / "keep"))
    assert "shorter than annotated" in res.stderr and "short_videos=skip" in res.stderr
    summary = json.loads(res.stdout)
    assert summary["data"]["short_video_questions"] == 1 and summary["data"]["short_videos_action"].startswith("kept")
    res = cli(*args, "short_videos=skip", "--out", str(tmp_path / "skip"))
    summary = json.loads(res.stdout)
    assert summary["data"]["short_videos_action"] == "skipped" and sum(r["samples"] for r in step_rows(tmp_path / "skip")) == 3


# ------------------------------------------------------------------------------------------------ output modes
def test_plain_progress_lines_when_not_a_terminal():
    from sevila_tools.progress import PlainProgress, make_run_progress

    stream = io.StringIO()
    assert isinstance(make_run_progress(True, stream=stream), PlainProgress)
    now = [0.0]
    with PlainProgress(True, "it", every=30.0, stream=stream) as bar:
        bar._clock = lambda: now[0]
        task = bar.add_task("refine epoch 1/2", total=4, info="")
        now[0] = 10.0
        bar.update(task, advance=1)  # 10 s: nothing yet
        now[0] = 40.0
        bar.update(task, advance=1, info="loss 1.0")  # 40 s: a line
        now[0] = 50.0
        bar.update(task, advance=2)  # done: a line
    lines = stream.getvalue().splitlines()
    assert lines == ["refine epoch 1/2: 2/4 (50%), 0.05 it/s, ETA 0:00:40, loss 1.0",
                     "refine epoch 1/2: 4/4 (100%), 0.08 it/s, ETA 0:00:00, loss 1.0"]


def test_fp16_precision_uses_a_gradient_scaler(train_data, tmp_path):
    out = tmp_path / "h"
    res = json.loads(cli("refine", *base(train_data), "--labels", str(train_data / "labels.jsonl"), "--out", str(out), "--epochs",
                         "1", "--batch-size", "2", "global_batch=2", "precision=fp16", *FAST, "--json").stdout)
    assert res["batch"]["precision"] == "fp16" and res["deviations"][-1]["option"] == "warmup_steps"
    assert not any(d["option"] == "precision" for d in res["deviations"])  # fp16 is the official setting
    scaler = read_training_checkpoint(out / "checkpoint.pth")["scaler"]
    assert isinstance(scaler, dict) and scaler["scale"] > 0


# ------------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_self_refine_through_installed_entry_point(train_data, tmp_path):
    out = tmp_path / "sr"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(SEVILA), "self-refine", *base(train_data), "--out", str(out), "--iterations", "2", "--epochs", "1",
         "--batch-size", "2", "global_batch=2", "finetune.num_frames=8", "--keyframes", "2", "--limit", "2",
         "val_frames=8", "--val-annotations", str(train_data / "ann.json"),
         "--pretrain-annotations", str(train_data / "qvh.jsonl"),
         "--pretrain-videos", str(train_data / "videos"), *FAST, "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["complete"] and [r["iteration"] for r in result["iterations"]] == [1, 2]
    assert "pretrain" in result["iterations"][0] and "pretrain" not in result["iterations"][1]
    for it in (1, 2):
        d = out / f"iter_{it}"
        for f in ("labels/pseudo_labels.jsonl", "refine/checkpoint.pth", "finetune/checkpoint.pth", "summary.json"):
            assert (d / f).is_file(), f
        labels = [json.loads(x) for x in (d / "labels" / "pseudo_labels.jsonl").read_text().splitlines()]
        assert all(r["seed"] == 42 + it - 1 for r in labels)
    r1 = read_training_checkpoint(out / "iter_1" / "refine" / "checkpoint.pth")
    assert r1["hparams"]["init"] == "checkpoint"  # refines the pre-trained Localizer
    f1 = read_training_checkpoint(out / "iter_1" / "finetune" / "checkpoint.pth")
    refined = read_training_checkpoint(Path(result["iterations"][0]["refine"]["weights"]))
    assert same(part(f1["model"], "localizer"), part(refined["model"], "localizer"))  # paper order: refine first
    assert result["checkpoint"].startswith(str(out / "iter_2" / "finetune"))


@pytest.mark.slow
def test_two_process_run_matches_one_process(train_data, tmp_path):
    pytest.importorskip("accelerate")
    accelerate = shutil.which("accelerate", path=str(SEVILA.parent)) or "accelerate"
    common = ["refine", *base(train_data), "--labels", str(train_data / "labels.jsonl"), "--epochs", "2", "--no-dropout",
              "global_batch=2", *FAST]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
         "no", "--dynamo_backend", "no", "--main_process_port", str(port), "-m", "sevila_tools.cli.app", *common,
         "--batch-size", "1", "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = read_training_checkpoint(tmp_path / "two" / "checkpoint.pth")
    assert two["hparams"]["world_size"] == 2 and two["complete"] and two["step"] == 4
    assert len(two["rng"]["per_rank"]) == 2
    cli(*common, "--batch-size", "2", "--out", str(tmp_path / "one"))
    one_rows, two_rows = step_rows(tmp_path / "one"), step_rows(tmp_path / "two")
    assert [r["samples"] for r in two_rows] == [r["samples"] for r in one_rows] == [2, 2, 2, 2]
    assert [r["loss"] for r in two_rows] == pytest.approx([r["loss"] for r in one_rows], rel=1e-2)
