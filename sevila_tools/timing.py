"""Stage timing hook: the pipeline and the encoder report named stages to a timer (``sevila bench`` reads it)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Protocol

import torch


class Timer(Protocol):
    """Anything with a ``stage(name)`` context manager."""

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]: ...


class NullTimer:
    """Times nothing (the default)."""

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class StageClock:
    """Adds up wall seconds per stage name; synchronises CUDA at both ends so GPU work is counted."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.calls[name] = self.calls.get(name, 0) + 1

    def reset(self) -> None:
        """Forget everything measured so far."""
        self.seconds.clear()
        self.calls.clear()
