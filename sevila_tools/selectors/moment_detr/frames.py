"""Moment-DETR outputs -> native frames: the two frame strategies and snapping to SeViLA's candidates
(``docs/selectors.md``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sevila_tools.errors import InputError
from sevila_tools.selectors.moment_detr.clip_grid import CLIP_LEN

__all__ = [
    "FRAME_STRATEGIES",
    "frames_top_window_uniform",
    "frames_topk_saliency",
    "midpoint_indices",
    "snap_to_candidates",
]

FRAME_STRATEGIES = ("top_window_uniform", "topk_saliency")


def midpoint_indices(start: int, end: int, n: int) -> list[int]:
    """SeViLA's midpoint rule: ``edges = linspace(start, end, n + 1).astype(int)``; frame j is
    ``(edges[j] + edges[j + 1]) // 2``."""
    edges = np.linspace(start, end, n + 1).astype(int)
    return [int((edges[j] + edges[j + 1]) // 2) for j in range(n)]


def frames_top_window_uniform(
    windows: Sequence[Sequence[float]], k: int, fps: float, start_frame: int, end_frame: int, duration: float
) -> tuple[list[int], dict[str, Any]]:
    """``top_window_uniform``: ``k`` native frames by the midpoint rule inside the best non-empty window.

    ``windows`` are ``[st, ed, score]`` in seconds relative to ``start_frame`` (any order; ranked by score,
    ties -> earlier in the list). Each window is clamped to ``[0, duration]`` and covers native frames
    ``[ceil(st * fps), ceil(ed * fps))``. Returns frames (ascending) and a record: ``window`` (clamped),
    ``window_raw``, ``window_rank``, ``skipped`` (empty windows passed over), ``padded``, ``fallback``.
    """
    order = sorted(range(len(windows)), key=lambda i: (-float(windows[i][2]), i))
    skipped = 0
    for rank, i in enumerate(order):
        st, ed, score = (float(x) for x in windows[i][:3])
        cst, ced = max(0.0, st), min(duration, ed)
        a = int(start_frame) + math.ceil(cst * fps - 1e-6)
        b = min(int(start_frame) + math.ceil(ced * fps - 1e-6), int(end_frame))
        if ced <= cst or b <= a:
            skipped += 1
            continue
        n = min(k, b - a)
        frames = midpoint_indices(a, b, n)
        padded = n < k
        frames += [frames[-1]] * (k - n)
        info = {
            "window": [round(cst, 4), round(ced, 4), score],
            "window_raw": [st, ed, score],
            "window_rank": rank,
            "window_frames": [a, b],
            "skipped": skipped,
            "padded": padded,
            "fallback": None,
        }
        return sorted(frames), info
    n = min(k, int(end_frame) - int(start_frame))
    frames = midpoint_indices(int(start_frame), int(end_frame), n)
    padded = n < k
    frames += [frames[-1]] * (k - n)
    return sorted(frames), {
        "window": None,
        "window_raw": None,
        "window_rank": None,
        "skipped": skipped,
        "padded": padded,
        "fallback": "whole_segment",
    }


def frames_topk_saliency(
    saliency: Sequence[float],
    clip_centres: Sequence[float],
    k: int,
    fps: float,
    start_frame: int,
    end_frame: int,
    duration: float,
    clip_len: float = CLIP_LEN,
) -> tuple[list[int], list[float], dict[str, Any]]:
    """``topk_saliency``: frames at the centres of the ``k`` highest-saliency clips (ties -> lower clip).

    Clips starting at or after ``duration`` are excluded; frame = ``start_frame + round(centre * fps)``
    clamped to ``[start_frame, end_frame - 1]``. Returns frames and their saliencies (both sorted by time)
    and a record with ``clips`` (positions in ``saliency``), ``padded``.
    """
    valid = [c for c in range(len(saliency)) if clip_centres[c] - clip_len / 2 < duration - 1e-9]
    chosen = sorted(valid, key=lambda c: (-float(saliency[c]), c))[:k]
    pairs = []
    for c in chosen:
        f = int(start_frame) + int(math.floor(clip_centres[c] * fps + 0.5))
        pairs.append((min(max(f, int(start_frame)), int(end_frame) - 1), float(saliency[c]), c))
    pairs.sort()
    padded = len(pairs) < k
    if not pairs:
        raise InputError("no clip of the segment lies inside the video")
    pairs += [pairs[-1]] * (k - len(pairs))
    return (
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        {
            "clips": [p[2] for p in pairs],
            "clip_centres": [clip_centres[p[2]] for p in pairs],
            "padded": padded,
        },
    )


def snap_to_candidates(
    frames: Sequence[int], candidates: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    """Move each frame (in the given order) to the nearest unused candidate (ties -> earlier candidate); when
    every candidate is used the nearest one is reused.

    Returns ``(frames, candidate positions, source)`` sorted by time, where ``source[i]`` is the index in
    ``frames`` that produced output ``i``.
    """
    if not candidates:
        raise InputError("no candidate frames to snap to")
    used: set[int] = set()
    out = []
    for src, f in enumerate(frames):
        order = sorted(range(len(candidates)), key=lambda p: (abs(int(candidates[p]) - int(f)), p))
        pos = next((p for p in order if p not in used), order[0])
        used.add(pos)
        out.append((int(candidates[pos]), pos, src))
    out.sort()
    return [f for f, _, _ in out], [p for _, p, _ in out], [s for _, _, s in out]
