"""Per-frame localizer decisions -> QVHighlights windows and saliency (the span rule of docs/metrics.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from sevila_tools.errors import InputError
from sevila_tools.eval.moments import (
    SpanConfig,
    find_spans,
    frames_to_saliency,
    frames_to_windows,
    submission_record,
    yes_probabilities,
)
from sevila_tools.eval.scorers import score_qvhighlights


def _logits(pattern: str, yes: float = 2.0, no: float = -1.0) -> tuple[list[float], list[float]]:
    """Y -> yes-logit above no-logit; n -> below. No-logits are all 0."""
    return [yes if c == "Y" else no for c in pattern], [0.0] * len(pattern)


def _edges(n: int, step: int = 2) -> list[int]:
    return [step * j for j in range(n + 1)]  # with fps=1 frame j covers [2j, 2j+2) s


def _p(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_spec_example_gap_of_three_is_one_span() -> None:
    y, z = _logits("YYnnnYY")
    wins = frames_to_windows(y, z, _edges(7), fps=1.0, duration=150)
    expected = round((4 * _p(2.0) + 3 * _p(-1.0)) / 7, 4)  # mean over all 7 frames, bridged "no" included
    assert wins == [[0.0, 14.0, expected]]


def test_spec_example_gap_of_seven_splits() -> None:
    y, z = _logits("YnnnnnnnY")
    assert find_spans([c == "Y" for c in "YnnnnnnnY"]) == [(0, 0), (8, 8)]
    wins = frames_to_windows(y, z, _edges(9), fps=1.0, duration=150)
    assert wins == [
        [0.0, 2.0, round(_p(2.0), 4)],
        [16.0, 18.0, round(_p(2.0), 4)],
    ]  # tie: earlier start first
    # six "no" frames are still bridged
    assert find_spans([c == "Y" for c in "YnnnnnnY"]) == [(0, 7)]


def test_spec_example_single_frame_span() -> None:
    y, z = _logits("nnYnn")
    assert frames_to_windows(y, z, _edges(5), fps=1.0, duration=150) == [[4.0, 6.0, round(_p(2.0), 4)]]


def test_spec_example_fallback_best_frame() -> None:
    y = [-3.0, -0.5, -2.0, -0.5]
    z = [0.0] * 4
    wins = frames_to_windows(y, z, _edges(4), fps=1.0, duration=150)
    assert wins == [[2.0, 4.0, round(_p(-0.5), 4)]]  # first maximum
    full = frames_to_windows(
        y, z, _edges(4), fps=1.0, duration=8, cfg=SpanConfig(empty_fallback="full_video")
    )
    assert full == [[0.0, 8.0, round(float(np.mean([_p(v) for v in y])), 4)]]


def test_ties_are_no_in_argmax() -> None:
    wins = frames_to_windows([0.0, 1.0], [0.0, 0.0], _edges(2), fps=1.0, duration=150)
    assert wins == [[2.0, 4.0, round(_p(1.0), 4)]]


def test_ordering_truncation_and_rounding() -> None:
    # spans at frames 0, 8, 16 with yes-logits 1, 3, 2 -> order 8, 16, 0
    y = [-5.0] * 20
    for j, v in ((0, 1.0), (8, 3.0), (16, 2.0)):
        y[j] = v
    z = [0.0] * 20
    edges = [3 * j for j in range(21)]  # fps 9 -> 1/3 s per frame: repeating decimals
    wins = frames_to_windows(y, z, edges, fps=9.0, duration=150)
    assert [w[0] for w in wins] == [round(24 / 9, 4), round(48 / 9, 4), 0.0]
    assert wins[0] == [2.6667, 3.0, round(_p(3.0), 4)]
    for w in wins:
        assert all(v == round(v, 4) for v in w)
    scores = [w[2] for w in wins]
    assert scores == sorted(scores, reverse=True)
    assert len(frames_to_windows(y, z, edges, fps=9.0, duration=150, cfg=SpanConfig(max_windows=2))) == 2


def test_windows_are_clipped_to_duration() -> None:
    y, z = _logits("nnY")
    assert frames_to_windows(y, z, [0, 60, 120, 180], fps=30.0, duration=5.0) == [
        [4.0, 5.0, round(_p(2.0), 4)]
    ]


def test_span_score_variants_and_threshold_decision() -> None:
    y = [2.0, -1.0, 1.0]
    z = [0.0, 0.0, 0.0]
    p = [_p(v) for v in y]
    mean_all = frames_to_windows(y, z, _edges(3), 1.0, 150)
    assert mean_all == [[0.0, 6.0, round(sum(p) / 3, 4)]]
    yes_only = frames_to_windows(y, z, _edges(3), 1.0, 150, SpanConfig(span_score="mean_yes_prob"))
    assert yes_only == [[0.0, 6.0, round((p[0] + p[2]) / 2, 4)]]
    top = frames_to_windows(y, z, _edges(3), 1.0, 150, SpanConfig(span_score="max_prob"))
    assert top == [[0.0, 6.0, round(p[0], 4)]]
    strict = frames_to_windows(y, z, _edges(3), 1.0, 150, SpanConfig(decision="threshold", yes_threshold=0.8))
    assert strict == [[0.0, 2.0, round(p[0], 4)]]
    no_bridge = frames_to_windows(y, z, _edges(3), 1.0, 150, SpanConfig(span_threshold=0))
    assert [w[:2] for w in no_bridge] == [[0.0, 2.0], [4.0, 6.0]]


def test_config_and_input_validation() -> None:
    assert SpanConfig().model_dump() == {
        "decision": "argmax",
        "yes_threshold": 0.5,
        "span_threshold": 6,
        "span_score": "mean_prob",
        "max_windows": 10,
        "empty_fallback": "best_frame",
    }
    with pytest.raises(ValidationError):
        SpanConfig(decision="vote")
    with pytest.raises(ValidationError):
        SpanConfig(max_windows=0)
    with pytest.raises(InputError, match="edges"):
        frames_to_windows([1.0], [0.0], [0], 1.0, 150)
    with pytest.raises(InputError, match="no-logits"):
        frames_to_windows([1.0, 2.0], [0.0], [0, 1, 2], 1.0, 150)
    with pytest.raises(InputError, match="fps"):
        frames_to_windows([1.0], [0.0], [0, 1], 0.0, 150)


def test_yes_probabilities_is_softmax_and_stable() -> None:
    p = yes_probabilities([1.0, 1000.0, -1000.0], [0.0, 0.0, 0.0])
    assert p[0] == pytest.approx(math.exp(1) / (1 + math.exp(1)))
    assert p[1] == 1.0 and p[2] == pytest.approx(0.0)


def test_saliency_lengths_and_nearest_frame() -> None:
    times = [2.0 * j + 1.0 for j in range(75)]
    probs = [j / 100 for j in range(75)]
    sal = frames_to_saliency(probs, times, 150)
    assert len(sal) == 75 and sal == probs
    assert len(frames_to_saliency(probs, times, 126)) == 63
    assert len(frames_to_saliency([0.5], [3.0], 125)) == 63  # ceil(125 / 2)
    # 4 frames at 0, 10, 20, 30 s over 40 s -> 20 clips, centres 1, 3, ..., 39
    sal = frames_to_saliency([0.1, 0.2, 0.3, 0.4], [0.0, 10.0, 20.0, 30.0], 40)
    assert sal[:3] == [0.1, 0.1, 0.1] and sal[4] == 0.2  # centre 9 -> frame at 10
    assert sal[2] == 0.1  # centre 5 is equidistant from 0 and 10: earlier frame
    assert sal[-1] == 0.4
    with pytest.raises(InputError):
        frames_to_saliency([0.1], [0.0, 1.0], 10)


def test_submission_record_and_scoring_round_trip() -> None:
    y, z = _logits("nnnnYYYYYnnnnnnnnnn" + "n" * 56)  # 75 frames, yes on frames 4..8 -> [8, 18]
    wins = frames_to_windows(y, z, _edges(75), 1.0, 150)
    p = yes_probabilities(y, z).tolist()
    sal = frames_to_saliency(p, [2.0 * j + 1 for j in range(75)], 150)
    rec = submission_record("QVHighlight_42", "a query.", "vid_0.0_150.0", wins, sal)
    assert rec["qid"] == 42 and rec["pred_relevant_windows"] == [[8.0, 18.0, round(_p(2.0), 4)]]
    assert len(rec["pred_saliency_scores"]) == 75
    assert submission_record("42", "q", "v", wins, None).keys() == {
        "qid",
        "query",
        "vid",
        "pred_relevant_windows",
    }
    gt = [
        {
            "qid": 42,
            "duration": 150,
            "relevant_windows": [[8, 18]],
            "relevant_clip_ids": [4, 5, 6, 7, 8],
            "saliency_scores": [[4, 4, 4]] * 5,
        }
    ]
    m = score_qvhighlights([rec], gt)
    assert m["brief"]["MR-full-mAP"] == 100.0 and m["brief"]["MR-full-R1@0.7"] == 100.0
    assert m["brief"]["HL-min-VeryGood-mAP"] == 100.0 and m["brief"]["HL-min-VeryGood-Hit1"] == 100.0
    with pytest.raises(InputError, match="at least one window"):
        submission_record(1, "q", "v", [], None)
    with pytest.raises(InputError, match="integer"):
        submission_record("abc", "q", "v", wins, None)
