"""SeViLA's frame sampling rule and the public readers: ``sample_frames``, ``frames_at_times``, ``read_frames``."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sevila_tools.errors import InputError
from sevila_tools.video.auto import SeekReader, open_any_reader
from sevila_tools.video.base import Decoder, check_decoder, check_size, check_video_path
from sevila_tools.video.decode import Reader, read_with_fallback, validate_indices
from sevila_tools.video.parallel import read_parallel, read_seek, resolve_workers

__all__ = [
    "EmptyWindow",
    "SampledFrames",
    "frames_at_times",
    "read_frames",
    "read_indices",
    "sample_frames",
    "sample_indices",
    "window_is_empty",
]

_MODES = ("uniform", "random")
_EMPTY_WINDOW = ("raise", "start_frame")
EmptyWindow = Literal["raise", "start_frame"]


@dataclass
class SampledFrames:
    """Decoded frames plus the indices/timestamps they were taken at."""

    frames: np.ndarray  # (n, H, W, 3) uint8 RGB
    indices: list[int]  # native frame indices, len n (the last index repeats when padded)
    timestamps: list[float]  # indices[i] / fps, seconds
    edges: list[int]  # segment edges (native frames) used by the sampling rule
    fps: float
    num_video_frames: int
    padded: bool  # True when the video had fewer frames than requested
    decoder: Decoder  # decoder actually used ("decord" or "pyav")
    empty_window: bool = False  # the start/end window held no frame: every index is its start frame


def _window(vlen: int, fps: float, start: float | None, end: float | None) -> tuple[int, int]:
    """``[lo, hi)`` in native frames: ``int(t * fps)``, clamped to ``[0, vlen]`` (no ordering check)."""
    lo = 0 if start is None else int(start * fps)
    hi = vlen if end is None else int(end * fps)
    return max(lo, 0), min(hi, vlen)


def window_is_empty(num_video_frames: int, fps: float, start: float | None, end: float | None) -> bool:
    """True when the ``[start, end)`` window (seconds) holds no frame: empty, reversed or outside the video."""
    if start is None and end is None:
        return False
    if start is not None and end is not None and start >= end:
        return True
    lo, hi = _window(int(num_video_frames), fps, start, end)
    return lo >= hi or lo >= num_video_frames


def _check_request(n: int, vlen: int, fps: float, start, end, mode: str, empty_window: str) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"number of frames to sample must be >= 1, got {n}")
    if vlen < 1:
        raise InputError(f"cannot sample frames from a video with {vlen} frames")
    if mode not in _MODES:
        raise InputError(f"unknown sampling mode {mode!r}; choose 'uniform' or 'random'")
    if empty_window not in _EMPTY_WINDOW:
        raise InputError(f"unknown empty_window rule {empty_window!r}; choose 'raise' or 'start_frame'")
    if (start is not None or end is not None) and not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"fps must be positive to use a start/end window, got {fps}")
    return int(n)


def _raise_empty(vlen: int, fps: float, start, end) -> None:
    """The errors of ``empty_window="raise"``; a window inside one frame is allowed (official rule)."""
    if start is not None and end is not None and start >= end:
        raise InputError(f"start must be before end, got start={start} end={end}")
    if end is not None and end <= 0:
        raise InputError(f"time window end={end} s is empty: it ends before the video starts")
    lo, hi = _window(vlen, fps, start, end)
    if lo >= vlen or hi < lo:
        raise InputError(
            f"time window start={start} end={end} is empty for a video of {vlen} frames "
            f"({vlen / fps:.3f} s at {fps:g} fps)"
        )


def sample_indices(
    num_video_frames: int,
    n: int,
    fps: float,
    start: float | None = None,
    end: float | None = None,
    mode: Literal["uniform", "random"] = "uniform",
    rng: np.random.Generator | None = None,
    empty_window: EmptyWindow = "raise",
) -> tuple[list[int], list[int], bool]:
    """SeViLA's frame-index rule (official ``load_video``), as a pure function.

    Returns ``(indices, edges, padded)``: ``n`` native frame indices, the ``n_eff + 1`` segment edges
    (``n_eff = min(n, vlen)``) and whether the list was padded because the video has fewer than ``n``
    frames. The rule itself is described in ``docs/video.md``.

    ``empty_window`` decides what an empty, reversed or out-of-video ``[start, end)`` window does:
    ``"raise"`` (default) raises :class:`InputError` (a window inside one frame still yields that frame,
    as officially); ``"start_frame"`` samples the window's start frame (clamped into the video) ``n``
    times, as the official loader does for empty windows (see :func:`window_is_empty`).

    Raises :class:`InputError` if ``n < 1``, the video has no frames, ``fps <= 0`` with a window, or
    ``mode``/``empty_window`` is unknown.
    """
    vlen = int(num_video_frames)
    n = _check_request(n, vlen, fps, start, end, mode, empty_window)
    n_eff = min(n, vlen)
    if window_is_empty(vlen, fps, start, end):
        if empty_window == "raise":
            _raise_empty(vlen, fps, start, end)
        lo, _ = _window(vlen, fps, start, end)
        first = min(lo, vlen - 1)
        return [first] * n, [first] * (n_eff + 1), n_eff < n
    lo, hi = _window(vlen, fps, start, end)
    edges = np.linspace(lo, hi, n_eff + 1).astype(int)
    if mode == "uniform":
        indices = [int((edges[j] + edges[j + 1]) // 2) for j in range(n_eff)]
    else:
        gen = rng if rng is not None else np.random.default_rng()
        indices = [
            int(gen.integers(edges[j], edges[j + 1])) if edges[j + 1] > edges[j] else int(edges[j])
            for j in range(n_eff)
        ]
    padded = n_eff < n
    if padded:
        indices += [indices[-1]] * (n - n_eff)
    return indices, [int(e) for e in edges], padded


def _read(reader: Reader, indices: list[int], workers: int) -> tuple[np.ndarray, str]:
    if isinstance(reader, SeekReader):
        return read_seek(reader, indices, workers)
    if workers > 1:
        return read_parallel(reader, indices, workers)
    return read_with_fallback(reader, indices)


def _open(
    path: str | os.PathLike[str], decoder: str, size: int | None, workers: int | None
) -> tuple[Reader, int]:
    """Check the arguments, open the reader (``auto`` chooses per file) and resolve ``workers``."""
    check_size(size)
    check_decoder(decoder)
    n = resolve_workers(workers, decoder)
    p = check_video_path(path)
    return open_any_reader(p, decoder, size), n


def read_indices(
    path: str | os.PathLike[str],
    indices: Sequence[int],
    decoder: Decoder = "auto",
    size: int | None = 224,
    workers: int | None = None,
) -> tuple[np.ndarray, str, Reader]:
    """:func:`read_frames`, also returning the reader (its ``fps`` and ``num_frames``)."""
    reader, n = _open(path, decoder, size, workers)
    # PyAV without a stored frame count: out-of-range indices are detected while decoding
    idx = validate_indices(indices, reader.known_num_frames, reader.path)
    frames, used = _read(reader, idx, n)
    return frames, used, reader


def read_frames(
    path: str | os.PathLike[str],
    indices: Sequence[int],
    decoder: Decoder = "auto",
    size: int | None = 224,
    workers: int | None = None,
) -> tuple[np.ndarray, str]:
    """Decode frames at native frame ``indices`` (any order, duplicates allowed).

    Returns ``(frames, decoder_used)`` with ``frames`` of shape ``(len(indices), H, W, 3)`` uint8 RGB:
    ``H = W = size`` (direct resize, no aspect preservation, exactly like decord's
    ``VideoReader(width=size, height=size)``) or the native resolution when ``size`` is None.
    ``workers`` processes share the work (same pixels; None: as many as useful, one for ``decord``;
    see ``docs/video.md``).
    """
    frames, used, _ = read_indices(path, indices, decoder, size, workers)
    return frames, used


def sample_frames(
    path: str | os.PathLike[str],
    n: int,
    start: float | None = None,
    end: float | None = None,
    decoder: Decoder = "auto",
    size: int | None = 224,
    mode: Literal["uniform", "random"] = "uniform",
    seed: int | None = None,
    empty_window: EmptyWindow = "raise",
    workers: int | None = None,
) -> SampledFrames:
    """Sample ``n`` frames with SeViLA's rule (:func:`sample_indices`) and decode them.

    ``start``/``end`` restrict sampling to a window in seconds (``empty_window`` as in
    :func:`sample_indices`; the result's ``empty_window`` flag says when the start-frame rule was used);
    ``mode="random"`` draws one frame per segment (seeded by ``seed``). ``decoder="auto"`` returns the
    official reader's frames, read the fastest exact way (``docs/video.md``). ``workers`` processes share
    the decoding, bit-identical to ``workers=1`` (None: as many as useful here, one for ``decord``).
    """
    reader, workers = _open(path, decoder, size, workers)
    vlen = reader.num_frames
    rng = np.random.default_rng(seed) if mode == "random" else None
    indices, edges, padded = sample_indices(
        vlen, n, reader.fps, start, end, mode=mode, rng=rng, empty_window=empty_window
    )
    frames, used = _read(reader, indices, workers)
    return SampledFrames(
        frames=frames,
        indices=indices,
        timestamps=[i / reader.fps for i in indices],
        edges=edges,
        fps=reader.fps,
        num_video_frames=vlen,
        padded=padded,
        decoder=used,
        empty_window=window_is_empty(vlen, reader.fps, start, end),
    )


def frames_at_times(
    path: str | os.PathLike[str],
    times: Sequence[float],
    decoder: Decoder = "auto",
    size: int | None = 224,
    workers: int | None = None,
) -> SampledFrames:
    """Decode the frames shown at the given times (seconds): index ``min(int(round(t * fps)), vlen - 1)``.

    Raises :class:`InputError` for an empty list or a time outside ``[0, duration]``.
    """
    check_size(size)
    check_decoder(decoder)
    resolve_workers(workers, decoder)
    if len(times) == 0:
        raise InputError("no times given")
    reader, workers = _open(path, decoder, size, workers)
    p = reader.path
    vlen = reader.num_frames
    fps = reader.fps
    duration = vlen / fps
    indices: list[int] = []
    for t in times:
        t = float(t)
        if not math.isfinite(t) or t < 0 or t > duration:
            raise InputError(f"time {t} s is outside the video (0 to {duration:.3f} s): {p}")
        indices.append(min(int(round(t * fps)), vlen - 1))
    frames, used = _read(reader, indices, workers)
    return SampledFrames(
        frames=frames,
        indices=indices,
        timestamps=[i / fps for i in indices],
        edges=[],
        fps=fps,
        num_video_frames=vlen,
        padded=False,
        decoder=used,
    )
