"""Processes: a single-process stand-in for ``accelerate.Accelerator``, the real one under a launcher, gathers."""

from __future__ import annotations

import os
from typing import Any

import torch


class LocalAccelerator:
    """Single-process stand-in for :class:`accelerate.Accelerator` (no global state, no process group)."""

    process_index = 0
    num_processes = 1
    is_main_process = True

    def __init__(self, device: str | torch.device = "cpu") -> None:
        from sevila_tools.loading import resolve_device

        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))

    def wait_for_everyone(self) -> None:
        """Nothing to wait for."""


def make_accelerator(device: str | torch.device = "auto") -> Any:
    """The process's accelerator: :class:`accelerate.Accelerator` when launched with several processes
    (``accelerate launch``, ``torchrun``: ``WORLD_SIZE > 1``; ``cpu`` -> gloo), else :class:`LocalAccelerator`.
    Mixed precision is handled by the trainer, never by accelerate."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return LocalAccelerator(device)
    from accelerate import Accelerator

    dev = str(device)
    cpu = dev == "cpu" or (dev == "auto" and not torch.cuda.is_available())
    return Accelerator(cpu=cpu, mixed_precision="no")


def device_string(device: torch.device) -> str:
    """Device string for :func:`sevila_tools.loading.load_runtime` from an accelerator device."""
    return "cpu" if device.type == "cpu" else str(device)


def gather(accelerator: Any, obj: Any) -> list[Any]:
    """``[obj of process 0, obj of process 1, ...]`` (just ``[obj]`` in a single process)."""
    if accelerator.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


def mean_over_processes(accelerator: Any, values: list[float]) -> list[float]:
    """Element-wise mean of a list of floats over the processes."""
    if accelerator.num_processes == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(t, reduction="mean").cpu().tolist()
