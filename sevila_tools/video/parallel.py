"""One video, several processes: the wanted frames are split by keyframe across processes, pixels unchanged.

The calling process always decodes a share itself; the other shares go to the shared worker processes.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from sevila_tools.errors import InputError
from sevila_tools.video import auto
from sevila_tools.video.base import logger
from sevila_tools.video.decode import Reader, read_with_fallback
from sevila_tools.video.seek import (
    Run,
    RunDecoder,
    decode_runs,
    decode_runs_kept,
    decord_batch,
    plan_runs,
    split_runs,
)
from sevila_tools.video.workers import in_worker, shared_workers

__all__ = [
    "WORKERS_ENV",
    "check_workers",
    "clear_cache",
    "default_workers",
    "packet_index",
    "read_parallel",
    "read_seek",
    "resolve_workers",
]

#: environment variable that sets the default number of decode processes (1: never start worker processes)
WORKERS_ENV = "SEVILA_DECODE_WORKERS"
#: at most this many processes by default: 32 frames rarely span more keyframe runs than that usefully
MAX_DEFAULT_WORKERS = 8

packet_index = auto.packet_index
clear_cache = auto.clear_cache


def check_workers(workers: int) -> int:
    """``workers`` as a positive int, else :class:`InputError`."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    return workers


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Processes for one video's read: ``$SEVILA_DECODE_WORKERS``, else the usable cores (at most 8).

    1 inside a decode worker or a daemonic process (a DataLoader or pool worker): no processes below it.
    """
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        try:
            return check_workers(int(env))
        except ValueError:
            raise InputError(f"{WORKERS_ENV} must be a positive integer, got {env!r}") from None
    if in_worker() or multiprocessing.current_process().daemon:
        return 1
    return max(1, min(usable_cores(), MAX_DEFAULT_WORKERS))


def resolve_workers(workers: int | None, decoder: str) -> int:
    """``workers=None``: one process for the official reader (``decord``), else :func:`default_workers`."""
    if workers is None:
        return 1 if decoder == "decord" else default_workers()
    return check_workers(workers)


def read_seek(reader: auto.SeekReader, indices: list[int], workers: int) -> tuple[np.ndarray, str]:
    """The auto path: PyAV from the keyframe before each wanted frame, over up to ``workers`` processes.

    Bit-identical to the sequential PyAV reader (and so to decord wherever decord reads exactly); any
    failure re-reads the file with :func:`~sevila_tools.video.auto.fallback_reader`.
    """
    wanted = sorted(set(indices))
    runs = plan_runs(reader.index, wanted)
    try:
        if workers <= 1 or len(runs) < 2:
            got = decode_runs(str(reader.path), reader.size, reader.index, runs)
        else:
            got = _share_runs(reader, runs, workers)
        return np.stack([got[i] for i in indices]), reader.name
    except Exception as exc:  # seek mismatch, worker died...: the reader auto would use otherwise decides
        logger.debug("seek read of %s failed (%s); reading without seeking", reader.path, exc)
    return read_with_fallback(auto.fallback_reader(reader), indices)


#: runs are handed out in about this many pieces per process (small enough to even out late or slow workers)
PIECES_PER_PROCESS = 4


class _Pieces:
    """Pieces ``0..n-1`` claimed from the front (this process) and from the back (workers), and what came of them."""

    def __init__(self, n: int) -> None:
        self.front, self.back = 0, n
        self.got: dict[int, np.ndarray] = {}
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()

    def claim(self, from_front: bool) -> int | None:
        with self.lock:
            if self.front >= self.back or self.errors:
                return None
            if from_front:
                self.front += 1
                return self.front - 1
            self.back -= 1
            return self.back

    def done(self, frames: dict[int, np.ndarray] | None = None, error: BaseException | None = None) -> None:
        with self.lock:
            if error is not None:
                self.errors.append(error)
            elif frames is not None:
                self.got.update(frames)

    def stop(self) -> None:
        with self.lock:
            self.back = self.front


def _share_runs(reader: auto.SeekReader, runs: list[Run], processes: int) -> dict[int, np.ndarray]:
    """Decode ``runs`` with this process and ``processes - 1`` shared workers, balanced as they go.

    The runs are cut into contiguous pieces of similar cost. This process decodes pieces from the front, in
    file order (one open file, no seek where a run continues the previous one); a feeder thread hands the
    next piece from the back to each worker as soon as it is idle, so a worker that is slow to start or
    starved of CPU simply takes fewer pieces.
    """
    path, size, index = str(reader.path), reader.size, reader.index
    pieces = split_runs(runs, processes * PIECES_PER_PROCESS)
    plan = _Pieces(len(pieces))
    with shared_workers(processes - 1) as ws, RunDecoder(path, size, index) as mine:
        args = (ws, plan, pieces, (path, size, index), processes - 1)
        feeder = threading.Thread(target=_feed, args=args, name="sevila-decode-feeder", daemon=True)
        feeder.start()
        try:
            while (k := plan.claim(from_front=True)) is not None:
                plan.done(mine.decode(pieces[k]))
        except Exception as exc:  # noqa: BLE001 - raised below, once the workers are done
            plan.done(error=exc)
        finally:
            plan.stop()
            feeder.join()
            ws.cancel_busy()  # nothing is busy unless the feeder itself failed
    if plan.errors:
        raise plan.errors[0]
    return plan.got


def _feed(ws: Any, plan: _Pieces, pieces: list[list[Run]], file: tuple, slots: int) -> None:
    """The feeder thread: keep up to ``slots`` workers busy with pieces from the back, collect what they return."""
    try:
        while True:
            while ws.busy < slots and (k := plan.claim(from_front=False)) is not None:
                ws.submit(k, decode_runs_kept, (*file, pieces[k]), label=file[0])
            if not ws.busy:
                return
            for outcome in ws.collect():
                plan.done(outcome.value if outcome.ok else None, None if outcome.ok else outcome.value)
    except BaseException as exc:  # noqa: BLE001 - reported to the reading thread
        plan.done(error=exc)


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

    Never for AVI; otherwise :func:`~sevila_tools.video.auto.decord_reads_exactly` (H.264, or no B-frames).
    Elsewhere decord's output depends on which frames are asked together, so a split would change it.
    """
    facts = auto.stream_facts(path)
    return facts is not None and not facts.avi and auto.decord_reads_exactly(facts)


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


def _run_all(tasks: list[tuple[Callable[..., Any], tuple]], label: str) -> list[Any]:
    """Run ``(fn, args)`` tasks: the first in this process, the others on the shared workers meanwhile.

    The first failure is raised, after every task has finished (workers are never left busy).
    """
    first_fn, first_args = tasks[0]
    if len(tasks) == 1:
        return [first_fn(*first_args)]
    with shared_workers(len(tasks) - 1) as ws:
        try:
            for key, (fn, args) in enumerate(tasks[1:], start=1):
                ws.submit(key, fn, args, label=label)
            results: dict[int, Any] = {}
            errors: list[BaseException] = []
            try:
                results[0] = first_fn(*first_args)
            except Exception as exc:  # noqa: BLE001 - raised below, once the workers are done
                errors.append(exc)
            while ws.busy:
                for outcome in ws.collect():
                    if outcome.ok:
                        results[outcome.key] = outcome.value
                    else:
                        errors.append(outcome.value)
        finally:
            ws.cancel_busy()  # only after an interruption: their results are no longer wanted
    if errors:
        raise errors[0]
    return [results[k] for k in range(len(tasks))]
