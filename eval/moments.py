"""Per-frame Localizer decisions -> QVHighlights moments and saliency.

The official code has no such rule; this toolkit's span rule is in ``docs/metrics.md``, "Windows from frame decisions".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sevila_tools.errors import InputError


class SpanConfig(BaseModel):
    """Parameters of the span aggregation (``docs/metrics.md``, "Windows from frame decisions").

    Attributes:
        decision: ``argmax`` (frame is yes iff yes-logit > no-logit, as ``blip2_fmr``) or ``threshold``
            (``p_yes >= yes_threshold``).
        yes_threshold: threshold for the ``threshold`` decision.
        span_threshold: longest run of consecutive "no" frames allowed inside one span (frames, not seconds).
        span_score: ``mean_prob`` (mean p over all span frames, bridged "no" frames included),
            ``mean_yes_prob`` (yes frames only) or ``max_prob``.
        max_windows: windows kept per query (the official scorer reads 10).
        empty_fallback: when no frame is "yes": ``best_frame`` = one window on the segment of the
            most probable frame scored by its p; ``full_video`` = one window ``[0, duration]`` scored by the
            mean p.
    """

    model_config = ConfigDict(extra="forbid")

    decision: Literal["argmax", "threshold"] = "argmax"
    yes_threshold: float = Field(0.5, ge=0.0, le=1.0)
    span_threshold: int = Field(6, ge=0)
    span_score: Literal["mean_prob", "mean_yes_prob", "max_prob"] = "mean_prob"
    max_windows: int = Field(10, ge=1)
    empty_fallback: Literal["best_frame", "full_video"] = "best_frame"


def yes_probabilities(yes_logits: Sequence[float], no_logits: Sequence[float]) -> np.ndarray:
    """``p_j = softmax([no_j, yes_j])[1]`` computed stably."""
    y = np.asarray(yes_logits, dtype=np.float64)
    z = np.asarray(no_logits, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(np.clip(z - y, -700.0, 700.0)))


def find_spans(is_yes: Sequence[bool], span_threshold: int = 6) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` spans: open on a yes frame, bridge <= ``span_threshold`` no frames."""
    spans: list[tuple[int, int]] = []
    first = last = -1
    for j, yes in enumerate(is_yes):
        if not yes:
            continue
        if first < 0:
            first = j
        elif j - last - 1 > span_threshold:
            spans.append((first, last))
            first = j
        last = j
    if first >= 0:
        spans.append((first, last))
    return spans


def _check_inputs(
    yes_logits: Sequence[float], no_logits: Sequence[float], edges: Sequence[int], fps: float, duration: float
) -> None:
    n = len(yes_logits)
    if n == 0:
        raise InputError("no frames to aggregate (empty logits)")
    if len(no_logits) != n:
        raise InputError(f"got {n} yes-logits but {len(no_logits)} no-logits")
    if len(edges) != n + 1:
        raise InputError(f"edges must have n_frames + 1 = {n + 1} values, got {len(edges)}")
    if any(b < a for a, b in zip(edges[:-1], edges[1:], strict=True)):
        raise InputError("edges must be non-decreasing")
    if not fps or fps <= 0 or not math.isfinite(fps):
        raise InputError(f"fps must be positive, got {fps}")
    if not duration or duration <= 0 or not math.isfinite(duration):
        raise InputError(f"duration must be positive, got {duration}")


def frames_to_windows(
    yes_logits: Sequence[float],
    no_logits: Sequence[float],
    edges: Sequence[int],
    fps: float,
    duration: float,
    cfg: SpanConfig | None = None,
) -> list[list[float]]:
    """Turn per-frame localizer logits into scored windows ``[[st, ed, score], ...]``.

    Args:
        yes_logits, no_logits: per sampled frame, the logits of "yes" and "no" at the first decoder step.
        edges: ``n + 1`` native-frame segment edges of the sampling (frame j covers
            ``[edges[j], edges[j+1])``).
        fps: native frame rate; duration: video length in seconds (windows are clipped to ``[0, duration]``).
        cfg: :class:`SpanConfig` (defaults when omitted).

    Returns:
        At most ``cfg.max_windows`` windows sorted by score descending (ties: earlier start),
        numbers rounded to 4 decimals; always at least one window.
    """
    cfg = cfg or SpanConfig()
    _check_inputs(yes_logits, no_logits, edges, fps, duration)
    p = yes_probabilities(yes_logits, no_logits)
    if cfg.decision == "argmax":
        is_yes = (np.asarray(yes_logits, dtype=np.float64) > np.asarray(no_logits, dtype=np.float64)).tolist()
    else:
        is_yes = (p >= cfg.yes_threshold).tolist()

    def seconds(first: int, last: int) -> tuple[float, float]:
        st = min(max(edges[first] / fps, 0.0), duration)
        ed = min(max(edges[last + 1] / fps, 0.0), duration)
        return st, ed

    scored: list[tuple[float, float, float]] = []
    for first, last in find_spans(is_yes, cfg.span_threshold):
        span_p = p[first : last + 1]
        if cfg.span_score == "mean_prob":
            score = float(np.mean(span_p))
        elif cfg.span_score == "mean_yes_prob":
            score = float(np.mean([p[j] for j in range(first, last + 1) if is_yes[j]]))
        else:
            score = float(np.max(span_p))
        st, ed = seconds(first, last)
        scored.append((st, ed, score))
    if not scored:
        if cfg.empty_fallback == "best_frame":
            j = int(np.argmax(p))
            st, ed = seconds(j, j)
            scored.append((st, ed, float(p[j])))
        else:
            scored.append((0.0, float(duration), float(np.mean(p))))
    scored.sort(key=lambda w: (-w[2], w[0]))
    return [[round(st, 4), round(ed, 4), round(score, 4)] for st, ed, score in scored[: cfg.max_windows]]


def frames_to_saliency(
    yes_probs: Sequence[float], frame_times: Sequence[float], duration: float
) -> list[float]:
    """One saliency value per 2-s clip (``ceil(duration / 2)`` values): p of the frame nearest its centre.

    Ties between two equally near frames go to the earlier frame (in the given order).
    """
    if len(yes_probs) == 0:
        raise InputError("no frames to build saliency from")
    if len(frame_times) != len(yes_probs):
        raise InputError(f"got {len(yes_probs)} probabilities but {len(frame_times)} frame times")
    if not duration or duration <= 0 or not math.isfinite(duration):
        raise InputError(f"duration must be positive, got {duration}")
    n_clips = math.ceil(duration / 2)
    centres = 2.0 * np.arange(n_clips) + 1.0
    times = np.asarray(frame_times, dtype=np.float64)
    nearest = np.argmin(np.abs(centres[:, None] - times[None, :]), axis=1)
    probs = np.asarray(yes_probs, dtype=np.float64)
    return [float(v) for v in probs[nearest]]


def submission_record(
    qid: int | str,
    query: str,
    vid: str,
    windows: list[list[float]],
    saliency: list[float] | None,
) -> dict[str, Any]:
    """One QVHighlights submission line (fields: ``docs/metrics.md``); ``qid`` is turned into the official int id.

    Accepts ``2579``, ``"2579"`` or SeViLA's ``"QVHighlight_2579"``. ``saliency=None`` leaves out
    ``pred_saliency_scores`` (MR-only submission).
    """
    if isinstance(qid, str):
        tail = qid.rsplit("_", 1)[-1]
        if not tail.strip().lstrip("-").isdigit():
            raise InputError(f"QVHighlights qid must be an integer id, got {qid!r}")
        qid = int(tail)
    if not windows:
        raise InputError(f"qid {qid}: a submission needs at least one window")
    for w in windows:
        if len(w) != 3:
            raise InputError(f"qid {qid}: each window must be [start, end, score], got {w!r}")
    rec: dict[str, Any] = {
        "qid": int(qid),
        "query": query,
        "vid": vid,
        "pred_relevant_windows": [[float(x) for x in w] for w in windows],
    }
    if saliency is not None:
        rec["pred_saliency_scores"] = [float(x) for x in saliency]
    return rec


__all__ = [
    "SpanConfig",
    "find_spans",
    "frames_to_saliency",
    "frames_to_windows",
    "submission_record",
    "yes_probabilities",
]
