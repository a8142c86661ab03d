"""Keyframe selector interface and registry.

A selector receives the candidate frames of one video (already sampled with SeViLA's rule, see
:mod:`sevila_tools.video`) plus the question and options, and returns which frames the Answerer should
read. A new selector is one subclass of :class:`Selector` plus one :func:`register` decorator line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field

from sevila_tools.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from sevila_tools.video import SampledFrames


@dataclass
class SelectorInput:
    """Everything a selector may look at for one (video, question) pair.

    ``candidates`` are the frames sampled with SeViLA's rule over ``[start, end]`` (224x224 uint8 RGB,
    with native frame indices and timestamps). ``raw_features`` are the raw ViT features of those frames
    when already computed (shape ``(T, 257, D)``), so model-based selectors need not re-run the ViT.
    """

    video: str
    candidates: SampledFrames
    question: str
    options: list[str] = field(default_factory=list)
    start: float | None = None
    end: float | None = None
    raw_features: torch.Tensor | None = None
    answer: int | None = None  # gold index; only the oracle selector may read it


class Selection(BaseModel):
    """A selector's decision: which native frames to give the Answerer, in temporal order."""

    selector: str = Field(description="Name of the selector that produced this selection.")
    config: dict[str, Any] = Field(default_factory=dict, description="Full selector configuration.")
    candidate_frame_indices: list[int] = Field(description="Native frame indices of all candidates.")
    candidate_times: list[float] = Field(description="Timestamps (s) of all candidates.")
    candidate_scores: list[float] | None = Field(
        default=None,
        description="Per-candidate score used for ranking (None if the selector does not score).",
    )
    frame_indices: list[int] = Field(description="Selected native frame indices, sorted ascending.")
    times: list[float] = Field(description="Timestamps (s) of the selected frames.")
    candidate_positions: list[int | None] = Field(
        description="For each selected frame, its position among the candidates (None if not a candidate)."
    )
    scores: list[float | None] = Field(description="Score of each selected frame (None if unscored).")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Selector-specific record (raw outputs...)."
    )


class Selector(ABC):
    """Base class of keyframe selectors. Subclasses set ``name`` and implement :meth:`select`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abstractmethod
    def select(self, inp: SelectorInput, k: int) -> Selection:
        """Choose ``k`` frames for ``inp``; return them sorted by time."""

    def select_many(self, inputs: list[SelectorInput], k: int) -> list[Selection]:
        """Select for several questions; model-based selectors override this to batch their model calls."""
        return [self.select(inp, k) for inp in inputs]

    def config(self) -> dict[str, Any]:
        """The selector's configuration, recorded with every selection."""
        return {}


REGISTRY: dict[str, type[Selector]] = {}


def register(cls: type[Selector]) -> type[Selector]:
    """Class decorator adding a selector to :data:`REGISTRY` under ``cls.name``."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"selector name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def available_selectors() -> list[str]:
    """Names of all registered selectors."""
    return sorted(REGISTRY)


def get_selector_class(name: str) -> type[Selector]:
    """Look up a selector class by name, with a one-line error listing the valid names."""
    if name not in REGISTRY:
        raise InputError(f"unknown selector {name!r}; choose one of: {', '.join(available_selectors())}")
    return REGISTRY[name]


def topk_sorted(scores: list[float], k: int) -> list[int]:
    """Positions of the ``k`` highest scores (ties -> lower position first), returned in ascending order."""
    if k > len(scores):
        raise InputError(f"cannot select {k} keyframes from {len(scores)} candidate frames")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(order[:k])


def selection_from_positions(
    name: str,
    inp: SelectorInput,
    positions: list[int],
    scores: list[float] | None,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Selection:
    """Build a :class:`Selection` from candidate positions (already sorted ascending)."""
    cand = inp.candidates
    return Selection(
        selector=name,
        config=config or {},
        candidate_frame_indices=list(cand.indices),
        candidate_times=list(cand.timestamps),
        candidate_scores=None if scores is None else [float(s) for s in scores],
        frame_indices=[int(cand.indices[p]) for p in positions],
        times=[float(cand.timestamps[p]) for p in positions],
        candidate_positions=list(positions),
        scores=[None if scores is None else float(scores[p]) for p in positions],
        extra=extra or {},
    )
