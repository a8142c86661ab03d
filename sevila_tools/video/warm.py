"""Warm decode workers for long-lived processes: started ahead of the first video, stopped with their owner."""

from __future__ import annotations

import threading
import weakref

from sevila_tools.video.parallel import check_workers, default_workers
from sevila_tools.video.workers import (
    close_shared_workers,
    keep_shared_workers,
    shared_worker_pids,
    shared_workers,
)

__all__ = ["WarmDecoders", "start_decode_workers"]

_holds = 0
_holds_lock = threading.Lock()


def start_decode_workers(workers: int | None = None) -> None:
    """Start the worker processes of single-video reads now (non-blocking), so a first read skips start-up.

    ``workers`` counts processes as ``sample_frames(workers=)`` does: the calling process is one of them,
    so ``workers - 1`` are started (default: :func:`~sevila_tools.video.parallel.default_workers`).
    """
    n = default_workers() if workers is None else check_workers(workers)
    if n > 1:
        with shared_workers(n - 1) as ws:
            ws.start(n - 1)


def _release() -> None:
    global _holds
    with _holds_lock:
        _holds -= 1
        if _holds == 0:
            close_shared_workers()


class WarmDecoders:
    """A hold on warm decode workers: started now, stopped when the last hold is closed.

    For servers and tool sets: the second new video pays no interpreter start-up. Several holders share
    one set of workers; a hold is released by :meth:`close`, the ``with`` block, garbage collection or
    interpreter exit.
    """

    def __init__(self, workers: int | None = None) -> None:
        global _holds
        with _holds_lock:
            _holds += 1
            keep_shared_workers()
        self._finalizer = weakref.finalize(self, _release)
        try:
            start_decode_workers(workers)
        except BaseException:
            self.close()
            raise

    @property
    def closed(self) -> bool:
        """Whether this hold was released."""
        return not self._finalizer.alive

    @staticmethod
    def pids() -> list[int]:
        """Process ids of the decode workers now alive."""
        return shared_worker_pids()

    def close(self) -> None:
        """Release this hold (idempotent); the workers stop when no hold is left."""
        self._finalizer()

    def __enter__(self) -> WarmDecoders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
