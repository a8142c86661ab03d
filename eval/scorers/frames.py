"""Frame accuracy: per-frame yes/no Localizer decisions against the relevant windows (QVHighlights)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sevila_tools.errors import InputError

FRAME_SEC = "frame_sec"
"""Submission field: the time (s) of every sampled frame of a query."""
FRAME_YES = "frame_yes"
"""Submission field: the Localizer's decision for every sampled frame, 1 = yes, 0 = no."""


def frame_labels(times: Sequence[float], windows: Sequence[Sequence[float]] | None) -> list[int]:
    """1 where a time lies inside any window (both ends included), else 0; no windows (test split): all 0."""
    spans = [(float(w[0]), float(w[1])) for w in (windows or ())]
    return [int(any(st <= float(t) <= ed for st, ed in spans)) for t in times]


def has_frame_decisions(submission: Sequence[Mapping[str, Any]]) -> bool:
    """True when every line carries ``frame_sec`` and ``frame_yes``, False when none does; an error otherwise."""
    with_frames = [e for e in submission if FRAME_SEC in e or FRAME_YES in e]
    if not with_frames:
        return False
    if len(with_frames) != len(submission):
        lacking = [e.get("qid") for e in submission if FRAME_SEC not in e and FRAME_YES not in e]
        raise InputError(
            f"{len(lacking)} of {len(submission)} submission lines lack {FRAME_SEC}/{FRAME_YES} "
            f"(first qid: {lacking[0]}); frame accuracy needs them on every line"
        )
    return True


def _decisions(entry: Mapping[str, Any]) -> tuple[list[float], list[int]]:
    q = entry.get("qid")
    times, yes = entry.get(FRAME_SEC), entry.get(FRAME_YES)
    if not isinstance(times, list) or not isinstance(yes, list):
        raise InputError(f"submission qid {q}: {FRAME_SEC} and {FRAME_YES} must both be lists")
    if len(times) != len(yes):
        raise InputError(
            f"submission qid {q}: {len(times)} {FRAME_SEC} values but {len(yes)} {FRAME_YES} values"
        )
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
        raise InputError(f"submission qid {q}: {FRAME_SEC} must hold numbers (seconds)")
    if not all(v in (0, 1) for v in yes):
        raise InputError(f"submission qid {q}: {FRAME_YES} must hold 0 or 1 per frame")
    return [float(t) for t in times], [int(v) for v in yes]


def frame_accuracy(
    submission: Sequence[Mapping[str, Any]],
    ground_truth: Sequence[Mapping[str, Any]],
    match_number: bool = True,
) -> dict[str, Any]:
    """Per-frame accuracy of the yes/no decisions, pooled over the frames of all queries.

    Args:
        submission: lines ``{"qid", "frame_sec": [t, ...], "frame_yes": [0|1, ...]}`` (other fields ignored).
        ground_truth: records ``{"qid", "relevant_windows"}`` (no windows: every frame is negative).
        match_number: every ground-truth query must be in the submission and vice versa; ``False``
            scores the shared queries.

    Returns:
        ``{"accuracy", "frames", "queries", "positive_frames", "yes_frames", "unit": "percent"}``; accuracy
        in percent with 2 decimals (``None`` without frames).
    """
    windows = {g["qid"]: g.get("relevant_windows") for g in ground_truth}
    entries = list(submission)
    unknown = [e.get("qid") for e in entries if e.get("qid") not in windows]
    lacking = {q for q in windows} - {e.get("qid") for e in entries}
    if match_number and (unknown or lacking):
        raise InputError(
            f"frame accuracy: {len(lacking)} ground-truth queries without decisions, {len(unknown)} "
            f"submission queries not in the ground truth (first: {(unknown or sorted(lacking, key=str))[0]})"
        )
    entries = [e for e in entries if e.get("qid") in windows]
    if not entries:
        raise InputError("frame accuracy: no submission query is in the ground truth")
    frames = correct = positives = yes_total = 0
    for e in entries:
        times, yes = _decisions(e)
        labels = frame_labels(times, windows[e["qid"]])
        frames += len(labels)
        correct += sum(int(y == lab) for y, lab in zip(yes, labels, strict=True))
        positives += sum(labels)
        yes_total += sum(yes)
    accuracy = float(f"{correct * 100.0 / frames:.2f}") if frames else None
    return {
        "accuracy": accuracy,
        "frames": frames,
        "queries": len(entries),
        "positive_frames": positives,
        "yes_frames": yes_total,
        "unit": "percent",
    }


def single_frame_accuracy(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The official ``frameqa`` task's ``avg_acc``: the share (%) of (question, frame) pairs whose single-frame
    answer is the gold one, pooled over every frame of every question; the oracle's own accuracy is ``agg_metrics``.

    Args:
        records: prediction lines with ``answer`` (gold index) and ``frame_predictions`` (one index per frame).

    Returns:
        ``{"avg_acc", "frames", "questions", "unit": "percent"}``; ``avg_acc`` with 2 decimals (``None`` without
        frames).
    """
    frames = correct = 0
    for r in records:
        preds = r.get("frame_predictions")
        if not isinstance(preds, list) or r.get("answer") is None:
            raise InputError(f"record {r.get('qid')}: avg_acc needs answer and frame_predictions")
        frames += len(preds)
        correct += sum(int(int(p) == int(r["answer"])) for p in preds)
    avg = float(f"{correct * 100.0 / frames:.2f}") if frames else None
    return {"avg_acc": avg, "frames": frames, "questions": len(records), "unit": "percent"}
