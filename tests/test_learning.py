"""The self-chain learns: a short self-refinement from the tiny base model on a handful of NeedleQA videos makes
the loss fall and puts the Localizer's keyframes on the frames that answer the question.

Run with a broken loss scale (a sign flip or zero), a broken pseudo-label rule (yes iff the single-frame answer
is wrong, or every frame yes) or a broken keyframe choice (the lowest scores), this test fails."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sevila_tools.encoding import FrameSpec
from sevila_tools.eval.datasets import get_dataset
from sevila_tools.loading import load_runtime
from sevila_tools.pipeline import Pipeline, Query
from sevila_tools.synth import NeedleQAConfig, run_needleqa
from sevila_tools.training import resolve_config, train_stage


@pytest.fixture(scope="module")
def needles(tmp_path_factory):
    out = tmp_path_factory.mktemp("learning") / "needleqa"
    run_needleqa(NeedleQAConfig(out=out, videos=24, seed=90210, duration=12.0, splits="1,0,0"), progress=False)
    return get_dataset("needleqa").load(out / "annotations" / "train.csv", out / "videos")


def _in_event(sample, times):
    start, end = sample.extra["event_window"]
    return [start <= t <= end for t in times]


def localizer_report(runtime, samples) -> dict[str, float]:
    """Share of questions with a keyframe in the asked event (4 of 32), and the balanced frame accuracy of the
    Localizer's yes/no decisions against that event on the 32 candidates (mean of the accuracies on the frames
    inside and outside the event: 0.5 for a constant answer)."""
    pipeline = Pipeline(runtime, selector="localizer")
    items = [(pipeline.encoder.encode(FrameSpec(s.video, 32)), Query(s.question, s.options, s.answer))
             for s in samples]
    hits = [any(_in_event(s, sel.times)) for s, sel in zip(samples, pipeline.select(items, 4), strict=True)]
    right: dict[bool, list[bool]] = {True: [], False: []}
    for s, (ev, _), (yes, no) in zip(samples, items, pipeline.frame_logits(items), strict=True):
        for y, n, inside in zip(yes, no, _in_event(s, ev.frames.timestamps), strict=True):
            right[inside].append(bool(y > n) == inside)
    balanced = (np.mean(right[True]) + np.mean(right[False])) / 2
    return {"hit": float(np.mean(hits)), "balanced_frame_accuracy": float(balanced)}


def test_self_refinement_from_the_base_model_learns(needles, tmp_path):
    runtime = load_runtime("tiny-base", device="cpu")
    before = localizer_report(runtime, needles)
    config = resolve_config("refine", "needleqa", None, {
        "epochs": 10, "batch_size": 8, "global_batch": 8, "warmup_steps": 2, "validate_every_epoch": False,
        "init": "answerer-copy", "num_frames": 8, "seed": 3})
    result = train_stage(runtime, needles, config, tmp_path / "run", progress=False)
    steps = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in steps if r["kind"] == "step"]
    after = localizer_report(runtime, needles)
    assert result.complete and len(losses) == 30
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])
    # chance: 4 random keyframes of 32 hit an event of ~2 candidates about 25 % of the time
    assert after["hit"] >= 0.8 and after["hit"] >= before["hit"] + 0.25, (before, after)
    assert after["balanced_frame_accuracy"] >= 0.75, (before, after)
