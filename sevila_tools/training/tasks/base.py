"""The training-task contract: which branch learns, how a batch becomes a loss, what validation measures."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from sevila_tools.registry import Registry
from sevila_tools.training.frozen import frozen_pass, other_branch

if TYPE_CHECKING:
    from sevila_tools.encoding import EncodedVideo
    from sevila_tools.pipeline import Pipeline, Query
    from sevila_tools.training.config import TrainConfig
    from sevila_tools.training.data import Item


@dataclass
class Batch:
    """One micro-batch: annotations, decoded items, raw ViT features ``(B, T, L, D)`` and pipeline pairs."""

    samples: list[Any]
    items: list[Item]
    raw: torch.Tensor
    pairs: list[tuple[EncodedVideo, Query]]

    def localizer_texts(self, pipeline: Pipeline) -> list[str]:
        """The Localizer text of every question in the pipeline's prompt style."""
        return [pipeline.texts(q)[0] for _, q in self.pairs]

    def answerer_texts(self, pipeline: Pipeline) -> list[str]:
        """The Answerer text of every question in the pipeline's prompt style."""
        return [pipeline.texts(q)[1] for _, q in self.pairs]


class TrainingTask(ABC):
    """One training stage. Subclass, set the class attributes, implement :meth:`loss` and :meth:`validate`,
    decorate with :func:`register_task`; a module in ``sevila_tools.training.tasks`` is found on import.

    Attributes:
        name: the task name (``task:`` in recipes; recipes are ``<name>-<dataset>.yaml``).
        branch: the Q-Former branch that learns (``localizer`` or ``answerer``); the other stays frozen.
        description: one line for help texts.
        needs_answer: questions must have a gold answer and 2-5 options.
        takes_labels: accepts a pseudo-label file instead of computing labels on the fly.
        starts_localizer: the ``init`` setting (where the Localizer starts) applies.
    """

    name: ClassVar[str]
    branch: ClassVar[str]
    description: ClassVar[str] = ""
    needs_answer: ClassVar[bool] = True
    takes_labels: ClassVar[bool] = False
    starts_localizer: ClassVar[bool] = False

    def __init__(self, config: TrainConfig, pipeline: Pipeline) -> None:
        self.cfg = config
        self.pipeline = pipeline
        self.runtime = pipeline.runtime

    def check(self, samples: Sequence[Any]) -> None:
        """Refuse settings or data the task cannot use (one-line :class:`InputError`)."""
        return None

    def frozen(self) -> contextlib.AbstractContextManager:
        """Context of a pass through the frozen branch (dropout as ``frozen_dropout`` says, no gradients)."""
        return frozen_pass(self.runtime.model, other_branch(self.branch), self.cfg.frozen_dropout)

    @abstractmethod
    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one micro-batch and per-batch statistics to log (e.g. the positive label rate)."""

    @abstractmethod
    def validate(self, samples: Sequence[Any], accelerator: Any, bar: Any) -> dict[str, Any]:
        """Validation metrics of the current model: ``{"metric": name, "value": aggregate, ...}`` (the best
        checkpoint maximises ``value``); every process calls it with the same samples."""


#: every training task by name (this package's modules and the ``sevila_tools.training_tasks`` entry points)
TASKS: Registry[type[TrainingTask]] = Registry(
    "training task", "sevila_tools.training_tasks", package="sevila_tools.training.tasks", skip=("base",)
)


def register_task(cls: type[TrainingTask]) -> type[TrainingTask]:
    """Class decorator adding a task to :data:`TASKS` (names are unique)."""
    return TASKS.register(cls)
