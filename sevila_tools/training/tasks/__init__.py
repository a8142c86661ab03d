"""Training tasks: one module per stage, each registering a :class:`TrainingTask` (found on first lookup; other
distributions add tasks through the ``sevila_tools.training_tasks`` entry points)."""

from __future__ import annotations

from sevila_tools.training.tasks.base import TASKS, Batch, TrainingTask, register_task


def get_task(name: str) -> type[TrainingTask]:
    """The registered task class ``name`` (one-line error listing the names)."""
    return TASKS[name]


def task_names() -> list[str]:
    """Registered task names."""
    return TASKS.names()


__all__ = ["TASKS", "Batch", "TrainingTask", "get_task", "register_task", "task_names"]
