"""One video, several processes: the wanted frames are split by keyframe across workers, pixels unchanged."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from sevila_tools.errors import InputError
from sevila_tools.video.base import logger
from sevila_tools.video.decode import Reader, read_with_fallback
from sevila_tools.video.seek import (
    PacketIndex,
    Run,
    build_packet_index,
    decode_runs,
    decord_batch,
    plan_runs,
    split_runs,
)
from sevila_tools.video.workers import shared_workers

__all__ = ["check_workers", "clear_cache", "packet_index", "read_parallel"]


def check_workers(workers: int) -> int:
    """``workers`` as a positive int, else :class:`InputError`."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    return workers


@functools.lru_cache(maxsize=64)
def _cached_index(path: str, mtime_ns: int, size: int) -> PacketIndex | None:
    return build_packet_index(path)


def clear_cache() -> None:
    """Forget the cached packet indexes (benchmarks time first reads with it)."""
    _cached_index.cache_clear()


def packet_index(path: str | Path) -> PacketIndex | None:
    """:func:`build_packet_index`, cached per file (path, modification time and size)."""
    st = os.stat(path)
    return _cached_index(str(path), st.st_mtime_ns, st.st_size)


def read_parallel(reader: Reader, indices: list[int], workers: int) -> tuple[np.ndarray, str]:
    """Frames at ``indices`` through up to ``workers`` processes; bit-identical to the sequential read.

    Falls back to the sequential reader (in this process) when the split is pointless (fewer than two
    keyframe runs) or unsafe (no exact packet index), and whenever a worker fails, so that results and
    errors are exactly those of the sequential path.
    """
    wanted = sorted(set(indices))
    try:
        got = _parallel_frames(reader, wanted, workers)
    except Exception as exc:  # worker died, seek mismatch, decord failure...: the sequential path decides
        logger.debug("parallel read of %s failed (%s); reading sequentially", reader.path, exc)
        got = None
    if got is None:
        return read_with_fallback(reader, indices)
    return np.stack([got[i] for i in indices]), reader.name


def _parallel_frames(reader: Reader, wanted: list[int], workers: int) -> dict[int, np.ndarray] | None:
    path, size = str(reader.path), reader.size
    if reader.name == "decord":
        if not _decord_seeks_exactly(path):
            return None
        groups = _decord_groups(reader, wanted, workers)
        tasks = [(decord_batch, (path, size, g)) for g in groups]
    else:
        index = packet_index(path)
        known = reader.known_num_frames
        if index is None or (known is not None and known != index.num_frames):
            return None
        if wanted[-1] >= index.num_frames:
            return None  # out of range: the sequential reader raises the proper error
        parts = split_runs(plan_runs(index, wanted), workers)
        groups = [[t for run in part for t in run.targets] for part in parts]
        tasks = [(decode_runs, (path, size, index, part)) for part in parts]
    if len(tasks) < 2:
        return None
    logger.debug(
        "parallel read of %s: %d frames in %d worker tasks (%s)", path, len(wanted), len(tasks), reader.name
    )
    results = _run_all(tasks, label=path)
    got: dict[int, np.ndarray] = {}
    for group, frames in zip(groups, results, strict=True):
        if isinstance(frames, dict):
            got.update(frames)
        else:
            got.update(zip(group, frames, strict=True))
    return got


def _decord_seeks_exactly(path: str) -> bool:
    """Whether decord's ``get_batch`` returns the same frames whatever the access pattern.

    Not for AVI, nor for codecs other than H.264/HEVC with B-frames (mpeg4 with B-frames: decord returns
    frames shifted by the B-frame count after a seek); there its output depends on which frames are asked
    together, so a split would change it (see ``docs/video.md``).
    """
    import av  # noqa: PLC0415

    try:
        with av.open(path) as container:
            fmt = container.format.name
            codec = container.streams.video[0].codec_context.name
    except Exception:
        return False
    if "avi" in fmt.split(","):
        return False
    if codec in ("h264", "hevc"):
        return True
    index = packet_index(path)
    return index is not None and index.decode_pos == tuple(range(index.num_frames))


def _decord_groups(reader: Reader, wanted: list[int], workers: int) -> list[list[int]]:
    """Contiguous groups of ``wanted`` with balanced decode cost (frames from the keyframe before each)."""
    try:
        keys = sorted(int(k) for k in reader.vr.get_key_indices())
    except Exception:
        keys = [0]
    by_key: dict[int, list[int]] = {}
    for t in wanted:
        by_key.setdefault(keys[max(0, np.searchsorted(keys, t, side="right") - 1)], []).append(t)
    runs = [Run(key=k, targets=tuple(ts), cost=ts[-1] - k + 1) for k, ts in sorted(by_key.items())]
    return [[t for run in part for t in run.targets] for part in split_runs(runs, workers)]


def _run_all(tasks: list[tuple], label: str) -> list:
    """Run ``(fn, args)`` tasks on the shared workers; the first failure is raised."""
    with shared_workers(len(tasks)) as ws:
        for key, (fn, args) in enumerate(tasks):
            ws.submit(key, fn, args, label=label)
        results: dict[int, object] = {}
        error: BaseException | None = None
        while ws.busy:
            for outcome in ws.collect():
                if outcome.ok:
                    results[outcome.key] = outcome.value
                elif error is None:
                    error = outcome.value
        if error is not None:
            raise error
        return [results[k] for k in range(len(tasks))]
