"""Dataset throughput: ``DecodePool`` decodes many videos in worker processes, ordered and bounded."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from sevila_tools.errors import InputError, SevilaError, VideoError
from sevila_tools.video.base import Decoder, check_decoder, check_size, one_line
from sevila_tools.video.parallel import check_workers
from sevila_tools.video.sampling import (
    EmptyWindow,
    SampledFrames,
    frames_at_times,
    read_indices,
    sample_frames,
)
from sevila_tools.video.workers import WorkerSet

__all__ = ["DecodePool", "DecodeSpec"]


@dataclass(frozen=True)
class DecodeSpec:
    """One video to decode: SeViLA sampling (default), or exact ``indices``, or ``times`` in seconds."""

    path: str | os.PathLike[str]
    num_frames: int = 32
    start: float | None = None
    end: float | None = None
    mode: Literal["uniform", "random"] = "uniform"
    seed: int | None = None
    empty_window: EmptyWindow = "raise"
    indices: Sequence[int] | None = None
    times: Sequence[float] | None = None


def decode_spec(spec: DecodeSpec, decoder: Decoder, size: int | None) -> SampledFrames:
    """Decode one :class:`DecodeSpec` in this process only (what a pool worker runs)."""
    if spec.indices is not None and spec.times is not None:
        raise InputError("give indices or times, not both")
    if spec.times is not None:
        return frames_at_times(spec.path, spec.times, decoder=decoder, size=size, workers=1)
    if spec.indices is not None:
        frames, used, reader = read_indices(spec.path, spec.indices, decoder, size, workers=1)
        idx, fps = [int(i) for i in spec.indices], reader.fps
        return SampledFrames(frames, idx, [i / fps for i in idx], [], fps, reader.num_frames, False, used)
    return sample_frames(
        spec.path,
        spec.num_frames,
        start=spec.start,
        end=spec.end,
        decoder=decoder,
        size=size,
        mode=spec.mode,
        seed=spec.seed,
        empty_window=spec.empty_window,
        workers=1,
    )


class DecodePool:
    """Decode videos in ``workers`` processes with an ordered, bounded prefetch.

    ``pool.imap(specs)`` yields, in input order, one :class:`SampledFrames` or one error
    (:class:`VideoError`, or :class:`InputError` for an invalid request) per spec, and never holds more
    than ``max_pending`` results (decoding or decoded, not yet yielded). A worker that crashes, is killed
    or runs past ``timeout`` seconds on one item yields a one-line :class:`VideoError` for that item and
    is replaced. Each worker reads its video alone, as ``sample_frames(..., workers=1)`` does (``decoder``:
    same pixels). Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        workers: int = 2,
        decoder: Decoder = "auto",
        max_pending: int | None = None,
        size: int | None = 224,
        timeout: float | None = None,
    ) -> None:
        check_workers(workers)
        check_decoder(decoder)
        check_size(size)
        self.max_pending = 2 * workers if max_pending is None else int(max_pending)
        if self.max_pending < 1:
            raise InputError(f"max_pending must be >= 1, got {max_pending!r}")
        if timeout is not None and not timeout > 0:
            raise InputError(f"timeout must be positive or None, got {timeout!r}")
        self.workers, self.decoder, self.size, self.timeout = workers, decoder, size, timeout
        self._ws = WorkerSet(workers)
        self._held = 0
        self._active = False

    @property
    def pending(self) -> int:
        """Results held now: being decoded, or decoded and waiting for their turn to be yielded."""
        return self._held

    def worker_pids(self, busy_only: bool = False) -> list[int]:
        """Process ids of the live workers (for monitoring)."""
        return self._ws.pids()[: self._ws.busy] if busy_only else self._ws.pids()

    def imap(
        self, specs: Iterable[DecodeSpec | str | os.PathLike[str]]
    ) -> Iterator[SampledFrames | SevilaError]:
        """Yield one result per spec, in order (a path means ``DecodeSpec(path)``: 32 frames, uniform)."""
        if self._active:
            raise RuntimeError("this DecodePool is already iterating; use one imap at a time")
        self._active = True
        try:
            yield from self._imap(iter(specs))
        finally:
            self._ws.cancel_busy()  # an abandoned iteration leaves no stale task behind
            self._held = 0
            self._active = False

    def _imap(self, it: Iterator) -> Iterator[SampledFrames | SevilaError]:
        done: dict[int, SampledFrames | SevilaError] = {}
        labels: dict[int, str] = {}
        submitted = emitted = 0
        exhausted = False
        while True:
            while not exhausted and self._ws.idle > 0 and submitted - emitted < self.max_pending:
                try:
                    item = next(it)
                except StopIteration:
                    exhausted = True
                    break
                spec = item if isinstance(item, DecodeSpec) else DecodeSpec(item)
                labels[submitted] = str(spec.path)
                args = (spec, self.decoder, self.size)
                self._ws.submit(submitted, decode_spec, args, label=str(spec.path), timeout=self.timeout)
                submitted += 1
                self._held = submitted - emitted
            if emitted in done:
                result = done.pop(emitted)
                labels.pop(emitted, None)
                emitted += 1
                self._held = submitted - emitted
                yield result
            elif exhausted and emitted == submitted:
                return
            else:
                for o in self._ws.collect():
                    done[o.key] = o.value if o.ok else _as_error(o.value, labels.get(o.key, "a video"))

    def close(self) -> None:
        """Stop the worker processes."""
        self._ws.close()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_error(exc: BaseException, label: str) -> SevilaError:
    """A worker's exception as a one-line user error (unexpected ones become :class:`VideoError`)."""
    if isinstance(exc, SevilaError):
        return exc
    return VideoError(one_line(f"cannot decode video: {label} ({type(exc).__name__}: {exc})"))
