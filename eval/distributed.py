"""Rank and world of a run launched with several processes (``accelerate launch`` / ``torchrun``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Dist:
    """This process's place in the run (one process: rank 0 of 1, no-op collectives)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    state: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order."""
        if self.state is None:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


def _use_cpu_backend(device: str) -> bool:
    if device == "cpu" or not torch.cuda.is_available():
        return True
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def distributed(device: str) -> Dist:
    """Rank/world from :class:`accelerate.PartialState` when launched with several processes (gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist()
    from accelerate import PartialState

    state = PartialState(cpu=_use_cpu_backend(device))
    if state.num_processes <= 1:
        return Dist()
    return Dist(rank=state.process_index, world=state.num_processes, local_rank=state.local_process_index, state=state)


def rank_device(device: str, dist: Dist) -> str:
    """The device this rank uses (its own GPU under multi-GPU runs)."""
    if dist.world <= 1 or device not in ("auto", "cuda"):
        return device
    if _use_cpu_backend(device):
        return "cpu"
    return f"cuda:{dist.local_rank % max(torch.cuda.device_count(), 1)}"
