"""The answer-strategy contract: the :class:`Answer` result, :class:`AnswerStrategy` and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from sevila_tools.registry import Registry


@dataclass
class Answer:
    """The Answerer's decision for one question."""

    index: int
    probs: list[float]
    strategy: str
    decoding: str
    prompt: str
    step0_token: str | None = None
    step0_is_option: bool | None = None
    truncated: bool = False
    frame_indices: list[int] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)
    votes: list[int] | None = None


@dataclass
class Decision:
    """What a strategy returns per question (the pipeline adds prompt, frames and token names)."""

    index: int
    probs: list[float]
    step0: int
    truncated: bool
    votes: list[int] | None = None


class AnswerStrategy(ABC):
    """Base of answer strategies: ``decide`` answers a batch of questions with the same K and option count."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abstractmethod
    def decide(
        self, runtime: Any, raw_keyframes: torch.Tensor, qa_texts: list[str], num_options: int, decoding: str
    ) -> list[Decision]:
        """Keyframe features ``(B, K, L, D)`` (temporal order) -> one decision per question."""


#: every answer strategy by name (this package's modules and the ``sevila_tools.answerers`` entry points)
ANSWER_STRATEGIES: Registry[type[AnswerStrategy]] = Registry(
    "answerer", "sevila_tools.answerers", package="sevila_tools.answering", skip=("base",)
)


def register_answerer(cls: type[AnswerStrategy]) -> type[AnswerStrategy]:
    """Class decorator adding an answer strategy to :data:`ANSWER_STRATEGIES`."""
    return ANSWER_STRATEGIES.register(cls)


def get_answerer(name: str | AnswerStrategy) -> AnswerStrategy:
    """An instance of the registered strategy ``name`` (one-line error listing the names)."""
    if isinstance(name, AnswerStrategy):
        return name
    return ANSWER_STRATEGIES[name]()
