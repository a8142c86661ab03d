"""Training rules and the trainer: schedule, global batch, recipes, overrides, crops, refinement, fine-tuning,
validation with the best checkpoint, resuming (tiny random model, synthetic scene videos)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.register_assert_rewrite("training_support")
from training_support import (  # noqa: E402
    OPTIONS,
    QUESTION,
    YES_FRAMES,
    fresh_runtime,
    part,
    same,
    samples_of,
    snapshot,
    step_rows,
)

from sevila_tools.errors import InputError  # noqa: E402
from sevila_tools.eval.datasets import load_annotations  # noqa: E402
from sevila_tools.prompts import answer_target, answerer_prompt, localizer_prompt  # noqa: E402
from sevila_tools.training import (  # noqa: E402
    batch_layout,
    decay_split,
    frame_seed,
    linear_warmup_cosine_lr,
    param_groups,
    parse_overrides,
    qvh_frame_labels,
    random_resized_crop,
    read_training_checkpoint,
    resolve_config,
    step_plan,
    train_stage,
)
from sevila_tools.video import read_frames, sample_frames  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run faster on one thread


def cfg(task: str, **kw):
    return resolve_config(task, "nextqa", overrides=kw)


# ------------------------------------------------------------------------------------------------ pure rules
def test_lr_schedule_matches_formula():
    init, mn, wlr, warm, max_ep = 3e-5, 1e-6, 1e-8, 500, 10
    for step in (0, 1, 250, 499, 500, 900):
        expect = min(init, wlr + (init - wlr) * step / warm)
        assert linear_warmup_cosine_lr(0, step, init, mn, wlr, warm, max_ep) == pytest.approx(expect, rel=1e-12)
    assert linear_warmup_cosine_lr(0, 250, init, mn, wlr, warm, max_ep) == pytest.approx((init + wlr) / 2)
    for epoch in (1, 5, 9):
        expect = (init - mn) * 0.5 * (1 + math.cos(math.pi * epoch / max_ep)) + mn
        for step in (0, 7, 10_000):  # constant within an epoch
            assert linear_warmup_cosine_lr(epoch, step, init, mn, wlr, warm, max_ep) == pytest.approx(expect)
    assert linear_warmup_cosine_lr(0, 3, init, mn, wlr, 0, max_ep) == init  # warmup 0: max(0, 1) = 1


def test_weight_decay_grouping():
    rt = fresh_runtime()
    rt.model.freeze(("localizer",))
    decay, plain = decay_split(rt.model)
    assert "query_tokens_loc" in decay and "language_projection_loc.weight" in decay
    assert {"ln_vision_loc.weight", "ln_vision_loc.bias", "language_projection_loc.bias",
            "qformer_loc.layernorm.weight"} <= set(plain)
    trainable = {n for n, p in rt.model.named_parameters() if p.requires_grad}
    assert set(decay) | set(plain) == trainable and not set(decay) & set(plain)
    groups = param_groups(rt.model, 0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert [len(g["params"]) for g in groups] == [len(decay), len(plain)]


def test_one_process_with_accumulation_equals_four_processes():
    """The official finetune layout (8 per process x accumulation 2 x 4 processes) and one process reaching the
    same global batch of 64 by accumulation take the same optimizer steps over the same questions."""
    n = 1000
    four = batch_layout(8, 4, global_batch=64, reference_processes=4)
    one = batch_layout(8, 1, global_batch=64, reference_processes=4)
    assert (four.accum, one.accum) == (2, 8) and four.global_batch == one.global_batch == 64
    assert four.loss_scale == 1.0 and one.loss_scale == pytest.approx(2 / 8)  # same summed gradient
    plans4 = [step_plan(n, four, seed=3, epoch=1, rank=r) for r in range(4)]
    plan1 = step_plan(n, one, seed=3, epoch=1)
    assert len(plan1) == n // 64 == 15 and all(len(p) == len(plan1) for p in plans4)
    for s in range(len(plan1)):
        in_four = [i for r in range(4) for micro in plans4[r][s] for i in micro]
        in_one = [i for micro in plan1[s] for i in micro]
        assert len(in_four) == len(in_one) == 64 and sorted(in_four) == sorted(in_one)
        assert all(len(m) == 8 for r in range(4) for m in plans4[r][s]) and len(plans4[0][s]) == 2
    # every question at most once per epoch; the incomplete last step is dropped unless it is the only one
    seen = [i for step in plan1 for m in step for i in m]
    assert len(seen) == len(set(seen)) == 960
    assert [len(m) for m in step_plan(5, batch_layout(2, 1, global_batch=8), 0, 0)[0]] == [2, 2, 1]
    assert len(step_plan(20, batch_layout(2, 1, global_batch=8), 0, 0)) == 2
    assert len(step_plan(20, batch_layout(2, 1, global_batch=8), 0, 0, drop_last=False)) == 3
    tiny = step_plan(5, batch_layout(2, 2, global_batch=8), 0, 0, rank=1)
    assert len(tiny) == 1 and len(tiny[0]) == 2  # padded so both processes run 2 iterations
    with pytest.raises(InputError, match="multiple"):
        batch_layout(16, 3, global_batch=64)
    assert batch_layout(2, 1, global_batch=64, accum_steps=3).accum == 3  # accum_steps wins


def test_qvh_span_labels_on_real_records(real_data):
    samples = load_annotations("qvhighlights", real_data / "qvhighlights" / "highlight_train_release.jsonl")
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
        for st, ed in s.windows:
            assert qvh_frame_labels([int(st * fps), int(ed * fps)], fps, s.windows) == ["yes", "yes"]
    assert qvh_frame_labels([0, 30, 60], 30.0, None) == ["no", "no", "no"]


def test_random_resized_crop_is_one_crop_per_clip():
    rng = np.random.default_rng(0)
    flat = np.full((2, 224, 224, 3), 77, np.uint8)
    assert np.array_equal(random_resized_crop(flat, rng), flat)
    ramp = np.broadcast_to(np.arange(224, dtype=np.uint8)[None, None, :, None], (3, 224, 224, 3)).copy()
    a = random_resized_crop(ramp, np.random.default_rng(5))
    assert a.shape == ramp.shape and a.dtype == np.uint8
    assert np.array_equal(a, random_resized_crop(ramp, np.random.default_rng(5)))
    assert np.array_equal(a[0], a[1]) and np.array_equal(a[1], a[2]) and not np.array_equal(a, ramp)
    assert int(a[0, 112, -1, 0]) - int(a[0, 112, 0, 0]) >= 0.5 * 223  # >= half the area keeps most of the ramp


# ------------------------------------------------------------------------------------------------ overrides
def test_overrides_are_typed_and_checked(tmp_path):
    assert parse_overrides(["lr=3e-5", "epochs=2", "augment=false", "refine.epochs=1"]) == {
        "lr": 3e-5, "epochs": 2, "augment": False, "refine.epochs": 1}
    with pytest.raises(InputError, match="did you mean epochs"):
        parse_overrides(["epoch=2"])
    with pytest.raises(InputError, match="expected key=value"):
        parse_overrides(["lr"])
    with pytest.raises(InputError, match="invalid training settings: epochs"):
        cfg("refine", epochs=0)
    with pytest.raises(InputError, match="init"):
        cfg("refine", init="bert")
    with pytest.raises(InputError, match="no recipe"):
        resolve_config("pretrain", "nextqa")
    c = cfg("finetune", lr=1e-4)
    assert {"option": "lr", "official": 3e-5, "used": 1e-4} in c.deviations()
    own = tmp_path / "mine.yaml"
    own.write_text("task: refine\ndataset: nextqa\nepochs: 3\n")
    assert resolve_config("refine", "nextqa", own).epochs == 3
    own.write_text("task: refine\nbogus: 1\n")
    with pytest.raises(InputError, match="bogus"):
        resolve_config("refine", "nextqa", own)


# ------------------------------------------------------------------------------------------------ training
def test_refine_learns_labels_and_only_the_localizer_changes(train_data, tmp_path):
    rt = fresh_runtime()
    before = snapshot(rt.model)
    c = cfg("refine", epochs=8, batch_size=2, global_batch=2, lr=3e-3, min_lr=3e-3, warmup_steps=0, augment=False)
    res = train_stage(rt, samples_of(train_data), c, tmp_path / "r", labels=train_data / "labels.jsonl", progress=False)
    after = snapshot(rt.model)
    for name in ("vision_model", "language_model", "answerer"):
        assert same(part(before, name), part(after, name)), name
    assert not torch.equal(before["query_tokens_loc"], after["query_tokens_loc"])
    assert all(p.grad is None and not p.requires_grad for p in rt.model.parameters())
    rows = step_rows(tmp_path / "r")
    assert len(rows) == 16 and res.complete and res.steps == 16 and [r["step"] for r in rows] == list(range(1, 17))
    assert all(r["samples"] == 2 for r in rows)
    assert res.epoch_losses[-1] < 0.6 * rows[0]["loss"]
    assert [r["lr"] for r in rows] == [linear_warmup_cosine_lr(r["epoch"], r["step_in_epoch"], 3e-3, 3e-3, 1e-8, 0, 8)
                                       for r in rows]
    for s in samples_of(train_data):  # labelled-yes (red) frames now rank above the blue ones
        frames, _ = read_frames(s.video, YES_FRAMES)
        yes, _ = rt.localizer_logits(rt.vit(frames)[None], [localizer_prompt(QUESTION, OPTIONS)])
        assert min(yes[0, [0, 2]]) > max(yes[0, [1, 3]])


def test_finetune_learns_on_the_localizers_keyframes(train_data, tmp_path):
    """Loss of the first step = the Answerer's loss on the frozen Localizer's top-2 of the 8 drawn frames."""
    samples = samples_of(train_data)
    rt = fresh_runtime()
    before = snapshot(rt.model)
    c = cfg("finetune", epochs=1, batch_size=2, global_batch=4, num_frames=8, num_keyframes=2, lr=1e-3,
            warmup_steps=0, augment=False, dropout=False, frozen_dropout=False)
    res = train_stage(rt, samples, c, tmp_path / "f", progress=False)
    after = snapshot(rt.model)
    for name in ("vision_model", "language_model", "localizer"):
        assert same(part(before, name), part(after, name)), name
    assert not same(part(before, "answerer"), part(after, "answerer"))
    assert res.steps == 1 and res.batch["accumulation"] == 2
    ref = fresh_runtime()
    plan = step_plan(4, batch_layout(2, 1, global_batch=4), c.seed, 0)
    losses = []
    for micro in plan[0]:
        raws = []
        for p in micro:
            fr = sample_frames(samples[p].video, 8, mode="random", seed=frame_seed(c.seed, 0, samples[p].qid))
            raw = ref.vit(fr.frames)
            yes, _ = ref.localizer_logits(raw[None], [localizer_prompt(QUESTION, OPTIONS)])
            top = sorted(sorted(range(8), key=lambda i: (-float(yes[0, i]), i))[:2])
            raws.append(raw[top])
        texts = [answerer_prompt(QUESTION, OPTIONS)] * len(micro)
        with torch.no_grad():
            losses.append(float(ref.answerer_loss(torch.stack(raws), texts, [answer_target(0)] * len(micro))))
    assert step_rows(tmp_path / "f")[0]["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-4)


def test_validation_every_epoch_keeps_the_best_and_resume_equals_uninterrupted(train_data, tmp_path):
    samples = samples_of(train_data)
    c = cfg("refine", epochs=2, batch_size=2, global_batch=2, lr=1e-3, warmup_steps=1, val_frames=8,
            num_keyframes=2, frozen_dropout=False)
    full = train_stage(fresh_runtime(), samples, c, tmp_path / "a", val_samples=samples, progress=False)
    assert full.complete and full.steps == 4 and len(full.validation) == 2
    assert full.best["value"] == max(v["value"] for v in full.validation)
    assert full.final_validation["value"] == full.best["value"]  # the best reloaded and evaluated again
    assert (tmp_path / "a" / "checkpoint_best.pth").is_file() and full.weights.endswith("checkpoint_best.pth")
    val_rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in val_rows if r["kind"] == "val"] == [0, 1]

    part1 = train_stage(fresh_runtime(), samples, c, tmp_path / "b", val_samples=samples, max_steps=1, progress=False)
    assert not part1.complete and part1.steps == 1
    with pytest.raises(InputError, match="--resume"):
        train_stage(fresh_runtime(), samples, c, tmp_path / "b", progress=False)
    part2 = train_stage(fresh_runtime(), samples, c, tmp_path / "b", val_samples=samples, resume=True, max_steps=2,
                        progress=False)
    assert not part2.complete and part2.epochs_completed == 1 and part2.best is not None  # best of epoch 1 kept
    done = train_stage(fresh_runtime(), samples, c, tmp_path / "b", val_samples=samples, resume=True, progress=False)
    assert done.complete and done.steps == full.steps and done.best == full.best
    a, b = read_training_checkpoint(full.checkpoint), read_training_checkpoint(done.checkpoint)
    assert same(a["model"], b["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k][n], sb[k][n]) for k in sa for n in sa[k])
    rows = lambda d: (d / "metrics.jsonl").read_text().splitlines()  # noqa: E731
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    with pytest.raises(InputError, match="settings differ"):
        train_stage(fresh_runtime(), samples, c.model_copy(update={"lr": 2e-3}), tmp_path / "b", resume=True,
                    val_samples=samples, progress=False)
    again = train_stage(fresh_runtime(), samples, c, tmp_path / "b", val_samples=samples, resume=True, progress=False)
    assert again.steps == 4 and again.complete and again.final_validation == full.final_validation


def test_labels_from_pseudo_label_equal_the_reverse_chain(train_data, tmp_path):
    """Labels written by pseudo_label (same seed, one set per epoch, same crops) = the on-the-fly reverse chain."""
    from sevila_tools.training import pseudo_label

    samples = samples_of(train_data)
    c = cfg("refine", epochs=2, batch_size=2, global_batch=2, lr=1e-3, warmup_steps=1, frozen_dropout=False)
    fly = train_stage(fresh_runtime(), samples, c, tmp_path / "fly", progress=False)
    pseudo_label(fresh_runtime(), samples, tmp_path / "pl", c, progress_bar=False)
    from_file = train_stage(fresh_runtime(), samples, c, tmp_path / "file", labels=tmp_path / "pl" / "pseudo_labels.jsonl",
                            progress=False)
    assert same(read_training_checkpoint(from_file.checkpoint)["model"], read_training_checkpoint(fly.checkpoint)["model"])


def test_frozen_dropout_changes_pseudo_labels_only_when_on(train_data):
    from sevila_tools.training.data import DrawSpec, load_item
    from sevila_tools.training.frozen import build_pipeline, encoded_of, frozen_pass, query_of

    rt = fresh_runtime()
    pipe = build_pipeline(rt, "default")
    samples = samples_of(train_data)
    items = [load_item(s, i, 0, DrawSpec(8, 42, augment=False)) for i, s in enumerate(samples)]
    pairs = [(encoded_of(s, it.frames, rt.vit(it.frames.frames)), query_of(s)) for s, it in zip(samples, items, strict=True)]
    reference = pipe.pseudo_labels(pairs)  # eval mode
    runs = {}
    for dropout in (False, True):
        runs[dropout] = []
        for seed in range(3):
            torch.manual_seed(seed)
            with frozen_pass(rt.model, "answerer", dropout):
                runs[dropout].append(pipe.pseudo_labels(pairs))
    assert all(r == reference for r in runs[False])
    assert any(r != reference for r in runs[True])
    assert not any(m.training for m in rt.model.modules())  # modes restored


def test_a_new_task_is_one_class(train_data, tmp_path):
    """The task contract: a registered subclass trains through the same trainer (here: the Answerer on the first
    k candidates instead of the Localizer's choice)."""
    from sevila_tools.training import TASKS, TrainingTask, register_task
    from sevila_tools.training.tasks.finetune import FinetuneAnswerer

    @register_task
    class FirstFrames(TrainingTask):
        name = "first-frames-test"
        branch = "answerer"

        def loss(self, batch):
            raw = batch.raw[:, : self.cfg.num_keyframes]
            return self.runtime.answerer_loss(raw, batch.answerer_texts(self.pipeline),
                                              [answer_target(q.answer) for _, q in batch.pairs]), {}

        validate = FinetuneAnswerer.validate

    try:
        c = cfg("finetune", epochs=1, batch_size=2, global_batch=2, num_frames=4, num_keyframes=2)
        c = c.model_copy(update={"task": "first-frames-test"})
        rt = fresh_runtime()
        before = snapshot(rt.model)
        res = train_stage(rt, samples_of(train_data), c, tmp_path / "x", progress=False)
        assert res.steps == 2 and not same(part(before, "answerer"), part(snapshot(rt.model), "answerer"))
        assert same(part(before, "localizer"), part(snapshot(rt.model), "localizer"))
    finally:
        TASKS.pop("first-frames-test")
