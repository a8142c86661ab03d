"""Keyframe selector interface and registry: a new selector is one :class:`Selector` subclass + ``@register``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import UnionType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from sevila_tools.errors import InputError
from sevila_tools.registry import Registry

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
    answer: int | None = None  # gold index; only selectors with ``needs_gold`` may read it
    loc_text: str | None = None  # the Localizer text of this question in the run's prompt style
    qa_text: str | None = None  # the Answerer text of this question in the run's prompt style
    question_id: str | None = None  # the dataset's question id, in dataset runs


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


class NoOptions(BaseModel):
    """Options model of a selector that takes none."""

    model_config = ConfigDict(extra="forbid")


class Selector(ABC):
    """Base of keyframe selectors: a registered plugin that declares its own options and metadata.

    Class attributes (read by the CLI, ``sevila eval``, ``sevila ablate`` and the agents; none of them names a
    selector):

    * ``name``, ``description``: registry key and one line for listings and LLM tool descriptions;
    * ``Options``: pydantic model of the options the selector reads. Option keys form one flat namespace
      shared by all selectors (``clip_model``, ``mdetr_checkpoint``, ``long_video``, ``trust_checkpoint``,
      ``seed``...), so one CLI flag can feed every selector that declares that key; ``SELECTOR.KEY`` reaches one
      selector only. A field may ask for its own flag with ``json_schema_extra={"cli": {"flags": [...]}}``;
      clashing keys or flags are refused when the selector registers;
    * ``needs_gold``: reads the gold answer (evaluation only, e.g. the oracle);
    * ``needs_question_id``: reads the dataset's question id (dataset runs only, e.g. the ``file`` selector);
    * ``scores_candidates``: gives every candidate a score (a timeline can be drawn);
    * ``rank``: position in tables and listings (lower first);
    * ``frames_rule``: how the selector picks its own candidate count, when :meth:`num_candidates` ignores ``n``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    needs_gold: ClassVar[bool] = False
    needs_question_id: ClassVar[bool] = False
    scores_candidates: ClassVar[bool] = False
    rank: ClassVar[int] = 100
    frames_rule: ClassVar[str] = ""

    @classmethod
    def create(cls, runtime: Any, options: BaseModel) -> Selector:
        """Build from validated options (``cls.Options``); override when the constructor differs."""
        return cls(**options.model_dump())

    @classmethod
    def num_candidates(cls, num_frames: int, num_keyframes: int) -> int:
        """How many candidate frames to decode for ``num_frames`` -> ``num_keyframes``."""
        return num_frames

    @classmethod
    def unavailable_reason(cls, options: dict[str, Any], random_weights: bool) -> str | None:
        """Why this selector cannot run with ``options`` (None: it can); checked before any model loads."""
        return None

    @classmethod
    def check_videos(
        cls, segments: list[tuple[str, float | None, float | None]], options: dict[str, Any], decoder: str
    ) -> dict[str, Any] | None:
        """Look at a run's (video, start, end) segments before it starts: a record of what the selector will do
        with them (kept in the run's results), or a one-line :class:`InputError` when it cannot handle them."""
        return None

    @classmethod
    def check_questions(
        cls, dataset: str, questions: list[tuple[str, str]], k: int, options: dict[str, Any]
    ) -> None:
        """Look at a dataset run's questions, ``(question id, video id)`` pairs, before any model loads; raise a
        one-line :class:`InputError` when the selector cannot serve them (the ``file`` selector checks that its
        file covers them)."""
        return None

    @abstractmethod
    def select(self, inp: SelectorInput, k: int) -> Selection:
        """Choose ``k`` frames for ``inp``; return them sorted by time."""

    def select_many(self, inputs: list[SelectorInput], k: int) -> list[Selection]:
        """Select for several questions; model-based selectors override this to batch their model calls."""
        return [self.select(inp, k) for inp in inputs]

    def config(self) -> dict[str, Any]:
        """The selector's configuration, recorded with every selection."""
        return {}

    def fingerprint(self) -> dict[str, Any]:
        """What changes this selector's output (compared when a run is resumed); defaults to :meth:`config`."""
        return {"selector": self.name, **self.config()}

    def finalize_answer(self, inp: SelectorInput, selection: Selection, answer: Any) -> Any:
        """Hook after the Answerer read the keyframes; a selector may replace the answer (the oracle does)."""
        return answer


def option_kind(info: Any) -> str:
    """The value kind of an option field (``str``, ``int``, ``float``, ``bool``...), ``Literal``/``Optional`` unwrapped."""
    ann = info.annotation
    args = [a for a in get_args(ann) if a is not type(None)] if get_origin(ann) in (Union, UnionType) else [ann]
    kinds = {type(v).__name__ for a in args for v in get_args(a)} if all(get_origin(a) is Literal for a in args) \
        else {getattr(a, "__name__", str(a)) for a in args}
    return "|".join(sorted(kinds))


def cli_flags(info: Any) -> list[str]:
    """The command-line flags an option field asks for (``json_schema_extra={"cli": {"flags": [...]}}``)."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return list((extra.get("cli") or {}).get("flags") or [])


def _check_options(cls: type[Selector], registered: dict[str, type[Selector]]) -> None:
    """Option keys form one namespace: a key shared with another selector must hold the same kind of value and
    ask for the same flags, and a flag names one key only (``SELECTOR.KEY`` reaches one selector's key)."""
    mine = cls.Options.model_fields
    for key in mine:
        if not key.isidentifier():
            raise ValueError(f"selector {cls.name!r}: option {key!r} must be a Python identifier")
    for other in registered.values():
        if other is cls:
            continue
        theirs = other.Options.model_fields
        for key, info in mine.items():
            if key in theirs and (option_kind(info), cli_flags(info)) != (option_kind(theirs[key]), cli_flags(theirs[key])):
                raise ValueError(
                    f"selector {cls.name!r}: option {key!r} ({option_kind(info)}, flags {cli_flags(info)}) clashes "
                    f"with the same option of selector {other.name!r} ({option_kind(theirs[key])}, flags "
                    f"{cli_flags(theirs[key])}); give it another name, e.g. {cls.name}_{key}"
                )
            for okey, oinfo in theirs.items():
                taken = set(cli_flags(info)) & set(cli_flags(oinfo))
                if okey != key and taken:
                    raise ValueError(
                        f"selector {cls.name!r}: flag {sorted(taken)[0]} of option {key!r} is already the flag of "
                        f"option {okey!r} of selector {other.name!r}"
                    )


def _selector_info(cls: type[Selector]) -> dict[str, Any]:
    return {
        "needs_gold": cls.needs_gold,
        "scores_candidates": cls.scores_candidates,
        "rank": cls.rank,
        "options": {k: {"default": f.default, "description": f.description or ""}
                    for k, f in cls.Options.model_fields.items()},
    }


#: every keyframe selector by name (this package's modules and the ``sevila_tools.selectors`` entry points)
REGISTRY: Registry[type[Selector]] = Registry(
    "selector", "sevila_tools.selectors", package="sevila_tools.selectors", skip=("base",),
    order=lambda c: (c.rank, c.name), check=_check_options, info=_selector_info,
)


def register(cls: type[Selector]) -> type[Selector]:
    """Class decorator adding a selector to :data:`REGISTRY` under ``cls.name``."""
    return REGISTRY.register(cls)


def available_selectors() -> list[str]:
    """Names of all registered selectors (alphabetical)."""
    return sorted(REGISTRY.names())


def get_selector_class(name: str) -> type[Selector]:
    """Look up a selector class by name, with a one-line error listing the valid names."""
    return REGISTRY[name]


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """``value`` when it is one of ``choices``, else one line naming ``what`` and the choices."""
    if value not in choices:
        raise InputError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def check_keyframes(k: int, num_candidates: int | None = None) -> None:
    """One line for a keyframe count a selector cannot give: below 1, or above its ``num_candidates``."""
    if k < 1:
        raise InputError(f"k must be >= 1 (got {k})")
    if num_candidates is not None and k > num_candidates:
        raise InputError(f"cannot select {k} keyframes from {num_candidates} candidate frames")


def topk_sorted(scores: list[float], k: int) -> list[int]:
    """Positions of the ``k`` highest scores (ties -> lower position first), returned in ascending order."""
    check_keyframes(k, len(scores))
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
