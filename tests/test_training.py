"""Training: pseudo-labels, Localizer refinement, Answerer fine-tuning, QVHighlights pre-training, self-refinement,
checkpoints, resuming and multi-process runs (tiny random model, synthetic scene videos)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.eval.datasets import load_annotations
from sevila_tools.loading import load_runtime
from sevila_tools.prompts import answerer_prompt, localizer_prompt
from sevila_tools.synthetic import make_scene_video
from sevila_tools.training import (
    TrainConfig,
    decay_split,
    frame_seed,
    linear_warmup_cosine_lr,
    param_groups,
    pseudo_label,
    qvh_frame_labels,
    random_resized_crop,
    rank_batches,
    read_training_checkpoint,
    train_stage,
    usable_samples,
)
from sevila_tools.video import read_frames, sample_indices

runner = CliRunner()
SEVILA = Path(sys.executable).parent / "sevila"
RED, BLUE = (220, 30, 30), (30, 30, 220)
QUESTION = "what colour is the square?"
OPTIONS = ["red.", "blue.", "green."]
YES_FRAMES = [7, 22, 37, 52]  # red, blue, red, blue (scenes of 15 frames)
YES_LABELS = ["yes", "no", "yes", "no"]
FAST = ["--lr", "3e-2", "--min-lr", "3e-2", "--warmup-steps", "0", "--quiet"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread (and the 2-core CI box is shared by parallel jobs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """4 scene videos (red/blue/red/blue, 15 frames each, 30 fps), a SeViLA-JSON NExT-QA annotation file, a labels
    JSONL (red frames yes) and a QVHighlights-format file whose windows cover the red scenes."""
    d = tmp_path_factory.mktemp("train")
    (d / "videos").mkdir()
    recs, labels, qvh = [], [], []
    for i in range(4):
        make_scene_video(d / "videos" / f"v{i}.mp4", [(15, RED), (15, BLUE), (15, RED), (15, BLUE)], fps=30)
        qid = f"CW_v{i}_{i}"
        recs.append({"video": f"v{i}", "qid": qid, "question": QUESTION, "a0": "red.", "a1": "blue.",
                     "a2": "green.", "answer": 0})
        labels.append({"qid": qid, "frame_indices": YES_FRAMES, "labels": YES_LABELS})
        qvh.append({"qid": 100 + i, "query": "a red square", "duration": 2, "vid": f"v{i}",
                    "relevant_windows": [[0, 0.5], [1.0, 1.5]]})
    (d / "ann.json").write_text(json.dumps(recs))
    (d / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels))
    (d / "qvh.jsonl").write_text("\n".join(json.dumps(r) for r in qvh))
    return d


def samples_of(data: Path) -> list:
    return load_annotations("nextqa", data / "ann.json", videos_root=data / "videos")


def fresh_runtime():
    return load_runtime("tiny-random", device="cpu")


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def part(sd: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    from sevila_tools.modeling import branch_of_key

    return {k: v for k, v in sd.items() if branch_of_key(k) == name}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return len(a) > 0 and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def cli(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


# ------------------------------------------------------------------------------------------------ pure rules
def test_lr_schedule_matches_formula():
    init, mn, wlr, warm, max_ep = 3e-5, 1e-6, 1e-8, 500, 10
    for step in (0, 1, 250, 499, 500, 900):
        expect = min(init, wlr + (init - wlr) * step / warm)
        assert linear_warmup_cosine_lr(0, step, init, mn, wlr, warm, max_ep) == pytest.approx(expect, rel=1e-12)
    assert linear_warmup_cosine_lr(0, 0, init, mn, wlr, warm, max_ep) == wlr
    assert linear_warmup_cosine_lr(0, 250, init, mn, wlr, warm, max_ep) == pytest.approx((init + wlr) / 2)
    for epoch in (1, 5, 9):
        expect = (init - mn) * 0.5 * (1 + math.cos(math.pi * epoch / max_ep)) + mn
        for step in (0, 7, 10_000):  # constant within an epoch
            assert linear_warmup_cosine_lr(epoch, step, init, mn, wlr, warm, max_ep) == pytest.approx(expect)
    assert linear_warmup_cosine_lr(5, 0, init, 0.0, wlr, warm, 10) == pytest.approx(init / 2)
    assert linear_warmup_cosine_lr(0, 3, init, mn, wlr, 0, max_ep) == init  # warmup 0: max(0, 1) = 1


def test_weight_decay_grouping():
    rt = fresh_runtime()
    rt.model.freeze(("localizer",))
    decay, plain = decay_split(rt.model)
    assert "query_tokens_loc" in decay and "language_projection_loc.weight" in decay
    assert "qformer_loc.encoder.layer.0.attention.attention.query.weight" in decay
    assert {"ln_vision_loc.weight", "ln_vision_loc.bias", "language_projection_loc.bias",
            "qformer_loc.layernorm.weight"} <= set(plain)
    assert all(n.endswith("bias") or "LayerNorm" in n or "layernorm" in n or n.startswith("ln_vision")
               for n in plain)
    trainable = {n for n, p in rt.model.named_parameters() if p.requires_grad}
    assert set(decay) | set(plain) == trainable and not set(decay) & set(plain)
    assert all(n.split(".")[0].endswith("_loc") for n in trainable)
    groups = param_groups(rt.model, 0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert [len(g["params"]) for g in groups] == [len(decay), len(plain)]


def test_rank_batches_cover_epoch_order():
    one = rank_batches(10, 3, seed=1, epoch=2, drop_last=True)
    assert [len(b) for b in one] == [3, 3, 3] and len({i for b in one for i in b}) == 9
    assert rank_batches(10, 3, 1, 2) == rank_batches(10, 3, 1, 2) != rank_batches(10, 3, 1, 3)
    r0, r1 = (rank_batches(5, 2, 1, 0, rank=r, world=2, drop_last=False) for r in (0, 1))
    assert len(r0) == len(r1) == 2  # padded to 6 items, 3 per process
    assert {i for b in r0 + r1 for i in b} == set(range(5))
    assert rank_batches(1, 4, 0, 0) == [[0]]  # never zero batches


def test_qvh_span_labels_on_real_records(shared_data):
    samples = load_annotations("qvhighlights", shared_data / "qvhighlights" / "highlight_train_release.jsonl")
    multi = [s for s in samples if s.windows and len(s.windows) > 1][:50]
    assert len(multi) == 50
    fps = 30.0
    for s in multi:
        clips = set(s.extra["relevant_clip_ids"])
        idx = list(range(0, int(s.duration * fps), 7))
        labels = qvh_frame_labels(idx, fps, s.windows)
        for i, lab in zip(idx, labels, strict=True):
            t = i / fps
            if abs(t / 2 - round(t / 2)) < 1e-9:  # clip boundary: compared with the inclusive windows below
                continue
            # independent: QVHighlights windows are unions of 2-s clips [2c, 2c + 2)
            assert lab == ("yes" if int(t // 2) in clips else "no"), (s.qid, t)
        for st, ed in s.windows:  # both ends inclusive, just outside is "no" unless another window covers it
            assert qvh_frame_labels([int(st * fps), int(ed * fps)], fps, s.windows) == ["yes", "yes"]
            outside = [t for t in (st - 1 / fps, ed + 1 / fps) if 0 <= t and not any(a <= t <= b for a, b in s.windows)]
            assert qvh_frame_labels([round(t * fps) for t in outside], fps, s.windows) == ["no"] * len(outside)
    assert qvh_frame_labels([0, 30, 60], 30.0, None) == ["no", "no", "no"]  # test split: no windows


def test_config_recipes_and_validation():
    r, f, p = (TrainConfig.for_stage(s) for s in ("refine", "finetune", "pretrain"))
    assert (r.epochs, r.batch_size, r.accum_steps, r.warmup_steps, r.num_frames, r.init) == (10, 16, 1, 500, 4,
                                                                                             "checkpoint")
    assert (f.epochs, f.batch_size, f.accum_steps, f.warmup_steps, f.num_frames, f.num_keyframes) == (10, 8, 2, 1000,
                                                                                                      32, 4)
    assert (p.epochs, p.batch_size, p.warmup_steps, p.init, p.dataset) == (80, 16, 1000, "answerer-copy", "qvhighlights")
    assert all((c.lr, c.weight_decay, c.beta1, c.beta2, c.warmup_lr, c.min_lr) == (3e-5, 0.05, 0.9, 0.999, 1e-8, 0)
               for c in (r, f, p))
    from sevila_tools.errors import InputError

    with pytest.raises(InputError):
        TrainConfig.for_stage("refine", init="bert")
    with pytest.raises(InputError):
        TrainConfig.for_stage("finetune", num_frames=2, num_keyframes=4)


def test_random_resized_crop():
    rng = np.random.default_rng(0)
    flat = np.full((2, 224, 224, 3), 77, np.uint8)
    assert np.array_equal(random_resized_crop(flat, rng), flat)
    ramp = np.broadcast_to(np.arange(224, dtype=np.uint8)[None, None, :, None], (2, 224, 224, 3)).copy()
    a = random_resized_crop(ramp, np.random.default_rng(5))
    b = random_resized_crop(ramp, np.random.default_rng(5))
    assert a.shape == ramp.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert np.array_equal(a[0], a[1]) and not np.array_equal(a, ramp)  # one crop for the whole clip
    # a crop of >= half the area keeps at least ~70 % of the horizontal range of the ramp
    assert int(a[0, 112, -1, 0]) - int(a[0, 112, 0, 0]) >= 0.5 * 223


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


def test_pseudo_label_command_equals_direct_computation(data, tmp_path):
    out = tmp_path / "pl"
    res = cli("pseudo-label", "--annotations", str(data / "ann.json"), "--videos", str(data / "videos"),
              "--model", "tiny-random", "--device", "cpu", "--out", str(out), "--epochs", "2", "--seed", "3",
              "--quiet", "--json")
    summary = json.loads(res.stdout)
    records = [json.loads(x) for x in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert len(records) == 8 and {r["epoch"] for r in records} == {0, 1}
    rt = fresh_runtime()
    samples = {s.qid: s for s in samples_of(data)}
    yes = total = 0
    for r in records:
        s = samples[r["qid"]]
        # frames: one random index per quarter, seeded by (seed, epoch, qid), as the trainer draws them
        rng = np.random.default_rng(frame_seed(3, r["epoch"], s.qid))
        assert r["frame_indices"] == sample_indices(60, 4, 30.0, mode="random", rng=rng)[0]
        frames, _ = read_frames(s.video, r["frame_indices"])
        raw = rt.vit(frames)
        qa = answerer_prompt(QUESTION, OPTIONS)
        preds = [direct_prediction(rt, raw[j], qa, 3) for j in range(4)]
        assert r["predictions"] == preds
        assert r["labels"] == ["yes" if p == s.answer else "no" for p in preds]
        yes += r["labels"].count("yes")
        total += 4
    assert summary["frames"] == total and summary["positive_rate"] == pytest.approx(yes / total)
    assert summary["by_qtype"]["CW"]["positive_rate"] == pytest.approx(yes / total)
    assert json.loads((out / "pseudo_labels_summary.json").read_text())["records"] == 8


# ------------------------------------------------------------------------------------------------ refinement
def test_refine_learns_labels_and_only_the_localizer_changes(data, tmp_path):
    rt = fresh_runtime()
    before = snapshot(rt.model)
    cfg = TrainConfig.for_stage("refine", epochs=8, batch_size=2, lr=3e-2, min_lr=3e-2, warmup_steps=0)
    samples = samples_of(data)
    res = train_stage(rt, samples, cfg, tmp_path / "r", labels=data / "labels.jsonl", progress=False)
    after = snapshot(rt.model)
    for name in ("vision_model", "language_model", "answerer"):
        assert same(part(before, name), part(after, name)), name
    assert not torch.equal(before["query_tokens_loc"], after["query_tokens_loc"])
    assert all(p.grad is None and not p.requires_grad for p in rt.model.parameters())
    # the loss falls clearly
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and res.complete and res.steps == 16
    first, last_epoch = rows[0]["loss"], res.epoch_losses[-1]
    print(f"refine loss: first iteration {first:.3f}, last epoch mean {last_epoch:.3f}")
    assert last_epoch < 0.5 * first
    # the lr of every iteration is the schedule's
    assert [r["lr"] for r in rows] == [linear_warmup_cosine_lr(r["epoch"], r["iter"], 3e-2, 3e-2, 1e-8, 0, 8)
                                       for r in rows]
    # positively labelled (red) frames now rank above the negative (blue) ones on every video
    for s in samples:
        frames, _ = read_frames(s.video, YES_FRAMES)
        yes, _ = rt.localizer_logits(rt.vit(frames)[None], [localizer_prompt(QUESTION, OPTIONS)])
        assert min(yes[0, [0, 2]]) > max(yes[0, [1, 3]])


def test_finetune_trains_only_the_answerer(data, tmp_path):
    rt = fresh_runtime()
    before = snapshot(rt.model)
    cfg = TrainConfig.for_stage("finetune", epochs=1, batch_size=2, num_frames=8, num_keyframes=2, lr=1e-3,
                                warmup_steps=0)
    res = train_stage(rt, samples_of(data), cfg, tmp_path / "f", progress=False)
    after = snapshot(rt.model)
    for name in ("vision_model", "language_model", "localizer"):
        assert same(part(before, name), part(after, name)), name
    assert not same(part(before, "answerer"), part(after, "answerer"))
    assert all(p.grad is None for p in rt.model.parameters())
    assert res.steps == 1 and res.iterations == 2  # 2 iterations, accum_steps 2 -> one update
    ck = read_training_checkpoint(res.checkpoint)
    assert ck["trained_branch"] == "answerer" and ck["hparams"]["accum_steps"] == 2
    assert same(part(ck["model"], "answerer"), part(after, "answerer"))


def test_resume_gives_the_uninterrupted_result(data, tmp_path):
    samples = samples_of(data)
    cfg = TrainConfig.for_stage("refine", epochs=2, batch_size=2, lr=1e-3, warmup_steps=1)  # on-the-fly labels

    full = train_stage(fresh_runtime(), samples, cfg, tmp_path / "a", progress=False)
    part1 = train_stage(fresh_runtime(), samples, cfg, tmp_path / "b", max_steps=1, progress=False)  # mid epoch 0
    assert not part1.complete and part1.steps == 1
    with pytest.raises(Exception, match="--resume"):
        train_stage(fresh_runtime(), samples, cfg, tmp_path / "b", progress=False)
    part2 = train_stage(fresh_runtime(), samples, cfg, tmp_path / "b", resume=True, max_steps=2, progress=False)
    assert not part2.complete and part2.epochs_completed == 1  # killed after epoch 1 of 2
    done = train_stage(fresh_runtime(), samples, cfg, tmp_path / "b", resume=True, progress=False)
    assert done.complete and done.steps == full.steps == 4
    a, b = read_training_checkpoint(full.checkpoint), read_training_checkpoint(done.checkpoint)
    assert same(a["model"], b["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k][n], sb[k][n]) for k in sa for n in sa[k])
    rows = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    with pytest.raises(Exception, match="settings differ"):
        train_stage(fresh_runtime(), samples, TrainConfig.for_stage("refine", epochs=2, batch_size=2, lr=2e-3),
                    tmp_path / "b", resume=True, progress=False)
    # a finished run resumes to itself without training
    again = train_stage(fresh_runtime(), samples, cfg, tmp_path / "b", resume=True, progress=False)
    assert again.steps == 4 and again.complete
    # labels written by pseudo_label (same seed, one set per epoch) = the on-the-fly reverse chain, exactly
    pseudo_label(fresh_runtime(), samples, tmp_path / "pl", seed=cfg.seed, epochs=cfg.epochs, progress=False)
    from_file = train_stage(fresh_runtime(), samples, cfg, tmp_path / "c", labels=tmp_path / "pl" / "pseudo_labels.jsonl",
                            progress=False)
    assert same(read_training_checkpoint(from_file.checkpoint)["model"], a["model"])


# ------------------------------------------------------------------------------------------------ CLI + checkpoints
def test_refine_cli_checkpoint_loads_everywhere(data, tmp_path):
    out = tmp_path / "r"
    res = cli("refine", "--annotations", str(data / "ann.json"), "--videos", str(data / "videos"), "--labels",
              str(data / "labels.jsonl"), "--model", "tiny-random", "--device", "cpu", "--out", str(out),
              "--epochs", "2", "--batch-size", "2", *FAST, "--json")
    summary = json.loads(res.stdout)
    assert summary["complete"] and summary["steps"] == 4 and summary["stage"] == "refine"
    assert "localizer initialised from: tiny random init" in res.stderr
    ckpt = out / "checkpoint.pth"
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)  # tensors and primitives only
    assert raw["format"] == "sevila_tools" and raw["stage"] == "refine" and raw["epoch"] == 2
    assert {"optimizer", "scheduler_state", "rng", "hparams", "step"} <= set(raw)
    assert raw["hparams"]["lr"] == 3e-2 and raw["hparams"]["batch_size"] == 2 and raw["hparams"]["init"] == "checkpoint"
    assert not any(k.startswith(("vision_model", "language_model")) for k in raw["model"])
    assert not list(out.glob(".*tmp*"))  # atomic write leaves no temporary file

    rt = load_runtime("tiny-random", checkpoint=str(ckpt), device="cpu")
    base = snapshot(fresh_runtime().model)
    loaded = snapshot(rt.model)
    assert same(part(loaded, "localizer"), part(raw["model"], "localizer"))
    assert not same(part(loaded, "localizer"), part(base, "localizer"))
    assert same(part(loaded, "answerer"), part(base, "answerer"))
    assert rt.info["checkpoint_meta"] == {"stage": "refine", "step": 4, "epoch": 2}

    video = data / "videos" / "v0.mp4"
    loc = json.loads(cli("localize", str(video), QUESTION, "-n", "8", "-k", "2", "--model", "tiny-random",
                         "--checkpoint", str(ckpt), "--device", "cpu", "--json").stdout)
    from sevila_tools.video import sample_frames

    frames = sample_frames(str(video), 8)
    yes, _ = rt.localizer_logits(rt.vit(frames.frames)[None], [localizer_prompt(QUESTION, [])])
    assert [f["score"] for f in loc["frames"]] == pytest.approx(yes[0].tolist(), abs=1e-5)

    # a second run into the same folder is refused with one line
    bad = runner.invoke(app, ["refine", "--annotations", str(data / "ann.json"), "--videos", str(data / "videos"),
                              "--model", "tiny-random", "--device", "cpu", "--out", str(out), "--quiet"])
    assert bad.exit_code == 2 and "--resume" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_pretrain_then_finetune_cli(data, tmp_path):
    pre = tmp_path / "p"
    res = cli("pretrain-localizer", "--annotations", str(data / "qvh.jsonl"), "--videos", str(data / "videos"),
              "--model", "tiny-random", "--device", "cpu", "--out", str(pre), "--epochs", "1", "--batch-size", "2",
              *FAST, "--json")
    summary = json.loads(res.stdout)
    assert summary["complete"] and summary["hparams"]["init"] == "answerer-copy"
    assert "copy of the answerer" in res.stderr
    # the labels the trainer used: the random frames inside [0, .5] or [1, 1.5] s are "yes"
    samples = load_annotations("qvhighlights", data / "qvh.jsonl", videos_root=data / "videos")
    rows = [json.loads(x) for x in (pre / "metrics.jsonl").read_text().splitlines()]
    for row, batch in zip(rows, rank_batches(4, 2, 42, 0), strict=True):
        labels = []
        for p in batch:
            rng = np.random.default_rng(frame_seed(42, 0, samples[p].qid))
            idx = sample_indices(60, 4, 30.0, mode="random", rng=rng)[0]
            labels += ["yes" if (0 <= i / 30 <= 0.5 or 1.0 <= i / 30 <= 1.5) else "no" for i in idx]
        assert row["positive_rate"] == pytest.approx(labels.count("yes") / len(labels))
    pre_ck = read_training_checkpoint(pre / "checkpoint.pth")
    base = snapshot(fresh_runtime().model)
    assert same(part(pre_ck["model"], "answerer"), part(base, "answerer"))
    assert pre_ck["sources"]["localizer"].startswith("copy of the answerer")
    assert not same(part(pre_ck["model"], "localizer"), part(base, "localizer"))

    # fine-tune the answerer starting from the pre-training checkpoint: its localizer is used frozen and kept
    ft = tmp_path / "f"
    res = json.loads(cli("finetune", "--annotations", str(data / "ann.json"), "--videos", str(data / "videos"),
                         "--model", "tiny-random", "--checkpoint", str(pre / "checkpoint.pth"), "--device", "cpu",
                         "--out", str(ft), "--epochs", "1", "--batch-size", "2", "--accum-steps", "1", "--frames",
                         "8", "--keyframes", "2", "--limit", "2", "--beta2", "0.99", *FAST, "--json").stdout)
    assert res["complete"] and res["steps"] == 1 and res["hparams"]["num_samples"] == 2
    assert res["hparams"]["beta2"] == 0.99 and res["hparams"]["start_checkpoint"] == str(pre / "checkpoint.pth")
    ck = read_training_checkpoint(ft / "checkpoint.pth")
    assert same(part(ck["model"], "localizer"), part(pre_ck["model"], "localizer"))
    assert not same(part(ck["model"], "answerer"), part(base, "answerer"))
    rt = load_runtime("tiny-random", checkpoint=str(ft / "checkpoint.pth"), device="cpu")
    assert same(part(snapshot(rt.model), "answerer"), part(ck["model"], "answerer"))
    assert same(part(snapshot(rt.model), "localizer"), part(pre_ck["model"], "localizer"))


def test_usable_samples_and_labels_errors(data, tmp_path):
    samples = samples_of(data)
    no_answer = samples[0].model_copy(update={"answer": None})
    kept, dropped = usable_samples([no_answer, *samples], "refine", limit=2)
    assert dropped == 1 and [s.qid for s in kept] == [s.qid for s in samples[:2]]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"qid": "x", "frame_indices": [1], "labels": ["maybe"]}) + "\n")
    bad = runner.invoke(app, ["refine", "--annotations", str(data / "ann.json"), "--videos", str(data / "videos"),
                              "--labels", str(tmp_path / "bad.jsonl"), "--model", "tiny-random", "--device", "cpu",
                              "--out", str(tmp_path / "o"), "--quiet"])
    assert bad.exit_code == 2 and "yes'/'no'" in bad.stderr


@pytest.mark.slow
def test_self_refine_through_installed_entry_point(data, tmp_path):
    out = tmp_path / "sr"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(SEVILA), "self-refine", "--annotations", str(data / "ann.json"), "--videos", str(data / "videos"),
         "--model", "tiny-random", "--device", "cpu", "--out", str(out), "--iterations", "2", "--epochs", "1",
         "--batch-size", "2", "--finetune-frames", "8", "--keyframes", "2", "--limit", "2", "--val-annotations",
         str(data / "ann.json"), *FAST, "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["complete"] and [r["iteration"] for r in result["iterations"]] == [1, 2]
    for it in (1, 2):
        d = out / f"iter_{it}"
        for f in ("pseudo_labels.jsonl", "pseudo_labels_summary.json", "refine/checkpoint.pth",
                  "refine/metrics.jsonl", "finetune/checkpoint.pth", "finetune/metrics.jsonl", "summary.json"):
            assert (d / f).is_file(), f
        labels = [json.loads(x) for x in (d / "pseudo_labels.jsonl").read_text().splitlines()]
        assert len(labels) == 2 and all(r["seed"] == 42 + it - 1 for r in labels)
    r2 = read_training_checkpoint(out / "iter_2" / "refine" / "checkpoint.pth")
    assert r2["hparams"]["init"] == "checkpoint" and r2["hparams"]["iteration"] == 2
    assert result["checkpoint"] == str(out / "iter_2" / "finetune" / "checkpoint.pth")
    # the per-iteration validation = the forward chain of the final checkpoint (32 uniform frames, top-2)
    from sevila_tools.chain import SevilaChain

    chain = SevilaChain(load_runtime("tiny-random", checkpoint=result["checkpoint"], device="cpu"))
    correct = [chain.forward({"video": s.video, "question": s.question, "options": s.options, "num_frames": 32,
                              "num_keyframes": 2}).answer.answer_index == s.answer for s in samples_of(data)]
    assert result["iterations"][1]["validation"]["accuracy"] == sum(correct) / len(correct)
    assert result["iterations"][1]["validation"]["questions"] == 4


@pytest.mark.slow
def test_two_process_run_matches_one_process(data, tmp_path):
    pytest.importorskip("accelerate")
    accelerate = shutil.which("accelerate", path=str(SEVILA.parent)) or "accelerate"
    common = ["refine", "--annotations", str(data / "ann.json"), "--videos", str(data / "videos"), "--labels",
              str(data / "labels.jsonl"), "--model", "tiny-random", "--device", "cpu", "--epochs", "2",
              "--no-dropout", *FAST]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free rendezvous port (parallel CI jobs would collide on 29500)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # accelerate 1.x: --cpu alone starts one process; --multi_gpu + our --device cpu gives 2 CPU processes (gloo)
    proc = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
         "no", "--dynamo_backend", "no", "--main_process_port", str(port), "-m", "sevila_tools.cli.app", *common,
         "--batch-size", "1", "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = read_training_checkpoint(tmp_path / "two" / "checkpoint.pth")
    assert two["hparams"]["world_size"] == 2 and two["complete"] and two["step"] == 4
    assert len(two["rng"]["per_rank"]) == 2
    load_runtime("tiny-random", checkpoint=str(tmp_path / "two" / "checkpoint.pth"), device="cpu")
    # one process with batch 2 sees the same question pairs; DDP averages the two ranks' gradients
    cli(*common, "--batch-size", "2", "--out", str(tmp_path / "one"))
    rows = lambda d: [json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(tmp_path / "two") == pytest.approx(rows(tmp_path / "one"), rel=1e-2)
