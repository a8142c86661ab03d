"""Training tasks: one module per stage, each registering a :class:`TrainingTask` (found on import)."""

from __future__ import annotations

import importlib
import pkgutil

from sevila_tools.errors import InputError
from sevila_tools.training.tasks.base import TASKS, Batch, TrainingTask, register_task


def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")


def get_task(name: str) -> type[TrainingTask]:
    """The registered task class ``name`` (one-line error listing the names)."""
    if name not in TASKS:
        raise InputError(f"unknown training task {name!r}; choose one of: {', '.join(task_names())}")
    return TASKS[name]


def task_names() -> list[str]:
    """Registered task names."""
    return sorted(TASKS)


_discover()

__all__ = ["TASKS", "Batch", "TrainingTask", "get_task", "register_task", "task_names"]
