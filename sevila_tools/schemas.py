"""Typed requests and results of the SeViLA tools (pydantic v2); their field names are the argument names in Python,
the CLI's ``--json``, LangChain and MCP alike (times in seconds; see ``docs/architecture.md``, "Typed results").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from sevila_tools.prompts import LETTERS, MAX_OPTIONS

#: the model every command, run and tool loads when it names none (the BLIP-2 SeViLA is built on)
DEFAULT_MODEL = "Salesforce/blip2-flan-t5-xl"
#: the selector a request uses when it names none (SeViLA's Localizer)
DEFAULT_SELECTOR = "localizer"
#: the answer strategy a request uses when it names none (SeViLA's multi-frame Answerer)
DEFAULT_ANSWERER = "concat"
#: candidate frames and keyframes when a request, run or dataset names none (SeViLA's 32 -> 4)
DEFAULT_FRAMES = 32
DEFAULT_KEYFRAMES = 4
#: the one wording of the random-weights notice (results, tables, logs, the web page)
RANDOM_WEIGHTS_NOTICE = "RANDOM WEIGHTS (tiny-random preset): scores, answers and metrics are meaningless"


def weights_notice(random_weights: bool) -> str | None:
    """:data:`RANDOM_WEIGHTS_NOTICE` for random weights, else None."""
    return RANDOM_WEIGHTS_NOTICE if random_weights else None


class CLI:
    """Command-line metadata of a field that stays out of its JSON schema (what agents read):
    ``Field(..., json_schema_extra=CLI(flags=["--frames", "-n"], metavar="N"))``. Same keys as
    ``json_schema_extra={"cli": {...}}``: ``flags``, ``metavar``, ``argument``, ``hidden``, ``envvar``."""

    def __init__(self, **meta: Any) -> None:
        self.cli = meta

    def __call__(self, schema: dict[str, Any]) -> None:
        """Leave the JSON schema as it is."""


def cli_flags(*flags: str, metavar: str | None = None, **more: Any) -> CLI:
    """:class:`CLI` metadata from a field's flags (none: ``--field-name``), metavar and other keys."""
    return CLI(**({"flags": list(flags)} if flags else {}), **({"metavar": metavar} if metavar else {}), **more)


def read_settings(path: Any) -> dict[str, Any]:
    """A YAML or JSON file of settings (``--config FILE``): one mapping, one-line errors otherwise."""
    from pathlib import Path

    import yaml

    from sevila_tools.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"--config {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise InputError(f"--config {path} must hold a mapping of settings (key: value)")
    return data


def parse_pairs(items: list[str] | None, what: str = "a setting") -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (JSON values, else text); one-line error otherwise."""
    import json

    from sevila_tools.errors import InputError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"expected key=value for {what}, got {item!r}")
        try:
            out[key.strip()] = json.loads(value.strip())
        except ValueError:
            out[key.strip()] = value.strip()
    return out


class ModelOptions(BaseModel):
    """The model block every command, run and tool service shares: which weights, where, and how videos are read."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        DEFAULT_MODEL, description="tiny-random, a folder from `sevila convert`, or a BLIP-2 Flan-T5 id or folder.",
        json_schema_extra={"cli": {"flags": ["--model", "-m"], "metavar": "NAME", "envvar": "SEVILA_MODEL"}},
    )
    checkpoint: str = Field(
        "auto", description="SeViLA weights: auto, none, a .pth/.safetensors file or hf://owner/repo/file.",
        json_schema_extra={"cli": {"flags": ["--checkpoint", "-c"], "metavar": "FILE", "envvar": "SEVILA_CHECKPOINT"}},
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.", json_schema_extra={"cli": {"metavar": "NAME"}})
    decoder: str = Field("auto", description="Video reader: auto, decord or pyav.",
                         json_schema_extra={"cli": {"metavar": "NAME"}})
    trust_checkpoint: bool = Field(
        False, description="Allow pickled objects in checkpoints (runs their code: trusted files only).",
        json_schema_extra={"cli": {"flags": ["--trust-checkpoint"]}},
    )


_VIDEO = CLI(argument=True, metavar="VIDEO")
_OPTION = CLI(flags=["--option", "-o"], metavar="TEXT")
_SEC = CLI(metavar="SEC")
_FRAMES = CLI(flags=["--frames", "-n"], metavar="N")
_KEYFRAMES = CLI(flags=["--keyframes", "-k"], metavar="N")
_SELECTOR = CLI(flags=["--selector", "-s"], metavar="NAME", help="Keyframe selector.")
_NAME = CLI(metavar="NAME", help="Answer strategy.")


# fields and checks that several requests share (each request declares them in its own order)
def _video() -> Any:
    return Field(description="Path to a video file (any container ffmpeg reads).", json_schema_extra=_VIDEO)


def _start() -> Any:
    return Field(default=None, ge=0, description="Only use the video from this time (seconds).",
                 json_schema_extra=_SEC)


def _end() -> Any:
    return Field(default=None, gt=0, description="Only use the video up to this time (seconds).",
                 json_schema_extra=_SEC)


def _choices(**cli: Any) -> Any:
    return Field(min_length=2, max_length=MAX_OPTIONS, description="Answer options (2 to 5).", **cli)


def _decoding() -> Any:
    return Field(default="faithful", description="Letter decoding rule.")


def _answerer() -> Any:
    return Field(default=DEFAULT_ANSWERER, json_schema_extra=_NAME, description="Answer strategy: concat "
                 "(SeViLA's multi-frame Answerer) or voting (per-frame majority).")


def _not_blank(cls: Any, v: str, info: ValidationInfo) -> str:
    if not v.strip():
        raise ValueError(f"{info.field_name} is empty")
    return v


def _ordered_window(self: Any) -> Any:
    if self.start is not None and self.end is not None and self.start >= self.end:
        raise ValueError(f"start ({self.start}) must be before end ({self.end})")
    return self


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    video: str = _video()
    question: str = Field(description="The question about the video.",
                          json_schema_extra=CLI(argument=True, metavar="QUESTION"))
    options: list[str] = Field(
        default_factory=list,
        max_length=MAX_OPTIONS,
        description="Answer options (at most 5), without letters.",
        json_schema_extra=_OPTION,
    )
    start: float | None = _start()
    end: float | None = _end()

    _question = field_validator("question")(_not_blank)
    _window = model_validator(mode="after")(_ordered_window)

    @field_validator("options")
    @classmethod
    def _options(cls, v: list[str]) -> list[str]:
        if any(not o.strip() for o in v):
            raise ValueError("options must be non-empty strings")
        return v


class LocalizeRequest(_Request):
    """Score sampled frames for "does this frame answer the question?" and keep the top ones."""

    num_frames: int = Field(default=DEFAULT_FRAMES, ge=1, le=256, description="Candidate frames sampled uniformly.",
                            json_schema_extra=_FRAMES)
    num_keyframes: int = Field(default=DEFAULT_KEYFRAMES, ge=1, le=64, description="Keyframes to keep.",
                               json_schema_extra=_KEYFRAMES)
    selector: str = Field(default=DEFAULT_SELECTOR, description="Keyframe selector (see list_selectors).",
                          json_schema_extra=_SELECTOR)
    answer: int | None = Field(
        default=None,
        ge=0,
        lt=MAX_OPTIONS,
        description="Gold option index (evaluation only; the oracle selector needs it).",
        json_schema_extra=CLI(hidden=True),
    )

    @model_validator(mode="after")
    def _k(self) -> LocalizeRequest:
        if self.num_keyframes > self.num_frames:
            raise ValueError(f"num_keyframes ({self.num_keyframes}) exceeds num_frames ({self.num_frames})")
        return self


class AnswerRequest(_Request):
    """Answer a multiple-choice question from frames (uniform, or at given timestamps)."""

    options: list[str] = _choices(json_schema_extra=_OPTION)
    num_frames: int = Field(
        default=4, ge=1, le=64, description="Frames sampled uniformly when no timestamps.", json_schema_extra=_FRAMES
    )
    timestamps: list[float] | None = Field(
        default=None, description="Read the frames at these times (seconds).",
        json_schema_extra=CLI(flags=["--at"], metavar="SEC"),
    )
    decoding: Literal["faithful", "teacher_forced"] = _decoding()
    answerer: str = _answerer()


class ForwardRequest(LocalizeRequest):
    """The forward chain: a selector picks keyframes, the Answerer reads them together."""

    options: list[str] = _choices(json_schema_extra=_OPTION)
    decoding: Literal["faithful", "teacher_forced"] = _decoding()
    answerer: str = _answerer()


class PseudoLabelRequest(_Request):
    """Reverse chain: label each sampled frame yes/no by whether the Answerer gets the gold answer from it."""

    options: list[str] = _choices()
    answer: int = Field(ge=0, lt=MAX_OPTIONS, description="Index of the gold option.")
    num_frames: int = Field(default=4, ge=1, le=256, description="Frames to label (training uses 4).")
    sampling: Literal["uniform", "random"] = Field(
        default="uniform",
        description="uniform: segment midpoints; random: one random frame per segment (training).",
    )
    seed: int | None = Field(default=None, description="Seed for random sampling.")

    @model_validator(mode="after")
    def _gold(self) -> PseudoLabelRequest:
        if self.answer >= len(self.options):
            raise ValueError(f"answer index {self.answer} is out of range for {len(self.options)} options")
        return self


class FrameScore(BaseModel):
    """One candidate frame with its Localizer (or selector) score."""

    position: int = Field(description="Position among the sampled candidate frames (0-based).")
    frame_index: int = Field(description="Native frame number in the video.")
    time: float = Field(description="Timestamp in seconds.")
    score: float | None = Field(default=None, description="Ranking score (Localizer: raw 'yes' logit).")
    yes_prob: float | None = Field(default=None, description="softmax([no, yes])[1] (Localizer only).")
    keyframe: bool = Field(default=False, description="Selected as a keyframe.")


class KeyFrame(BaseModel):
    """A selected keyframe."""

    frame_index: int
    time: float
    score: float | None = None
    position: int | None = Field(
        default=None, description="Position among candidates (None if not a candidate)."
    )


class ModelInfo(BaseModel):
    """Where the weights came from."""

    model: str
    checkpoint: str | None = None
    random_weights: bool = False
    device: str = "cpu"


class LocalizeResult(BaseModel):
    """Result of the Localizer tool (or any selector)."""

    video: str
    question: str
    options: list[str]
    selector: str
    num_frames: int
    num_keyframes: int
    fps: float
    padded: bool = Field(description="The video had fewer frames than requested (last frame repeated).")
    frames: list[FrameScore]
    keyframes: list[KeyFrame]
    prompt: str | None = Field(default=None, description="Localizer text fed to T5 (Localizer only).")
    selection: dict[str, Any] = Field(default_factory=dict, description="Selector config and extra record.")
    model: ModelInfo
    notice: str | None = None


class AnswerResult(BaseModel):
    """Result of the Answerer tool."""

    video: str
    question: str
    options: list[str]
    answer_index: int
    answer_letter: str
    answer_text: str
    option_probs: list[float] = Field(description="softmax over the option-letter logits, in option order.")
    frame_indices: list[int]
    frame_times: list[float]
    decoding: str
    answerer: str = DEFAULT_ANSWERER
    step0_token: str | None = Field(
        default=None, description="Greedy decoder token at step 0 (normally '▁Option')."
    )
    step0_is_option: bool | None = None
    truncated: bool = Field(default=False, description="The prompt hit the 77-token limit.")
    votes: list[int] | None = Field(default=None, description="Per-frame answers (voting only).")
    prompt: str
    model: ModelInfo
    notice: str | None = None

    @property
    def letter(self) -> str:
        return LETTERS[self.answer_index]


class FrameLabel(BaseModel):
    """One pseudo-labelled frame."""

    position: int
    frame_index: int
    time: float
    predicted: int = Field(description="Option the single-frame Answerer picks (teacher-forced).")
    label: Literal["yes", "no"]


class PseudoLabelResult(BaseModel):
    """Result of the PseudoLabeller tool."""

    video: str
    question: str
    answer: int
    labels: list[FrameLabel]
    positive_rate: float
    model: ModelInfo
    notice: str | None = None


class ForwardResult(BaseModel):
    """Forward chain: keyframes plus the answer."""

    localization: LocalizeResult
    answer: AnswerResult


class AskRequest(_Request):
    """Open-ended question: free text generated by the Answerer from the keyframes."""

    num_frames: int = Field(default=DEFAULT_FRAMES, ge=1, le=256, description="Candidate frames sampled uniformly.")
    num_keyframes: int = Field(default=DEFAULT_KEYFRAMES, ge=1, le=64, description="Keyframes read by the Answerer.")
    selector: str = Field(default=DEFAULT_SELECTOR, description="Keyframe selector (see list_selectors).")
    max_new_tokens: int = Field(default=30, ge=1, le=128, description="Length limit of the answer.")


class AskResult(BaseModel):
    """Free-text answer with the keyframes it was read from."""

    video: str
    question: str
    answer_text: str
    keyframes: list[KeyFrame]
    model: ModelInfo
    notice: str | None = None


class MomentsRequest(BaseModel):
    """Moment retrieval on any video: windows where the Localizer says the query is shown."""

    model_config = ConfigDict(extra="forbid")

    video: str = _video()
    query: str = Field(description="What to look for, in words (e.g. 'a chef slices onions').",
                       json_schema_extra=CLI(argument=True, metavar="QUERY"))
    num_frames: int = Field(default=75, ge=2, le=256, description="Frames scored (75 = one per 2 s of 150 s).",
                            json_schema_extra=_FRAMES)
    start: float | None = _start()
    end: float | None = _end()
    max_windows: int = Field(default=10, ge=1, le=50, description="Ranked windows to return.")
    span_threshold: int = Field(default=6, ge=0, description="Longest run of 'no' frames bridged inside a window.")

    _query = field_validator("query")(_not_blank)
    _window = model_validator(mode="after")(_ordered_window)


class FrameDecision(BaseModel):
    """One scored frame of a moments request."""

    time: float
    yes_prob: float = Field(description="softmax([no, yes])[1] of the Localizer.")
    relevant: bool = Field(description="The Localizer's yes/no decision (yes logit > no logit).")


class MomentsResult(BaseModel):
    """Ranked windows and per-2-s saliency, in the moment-retrieval format (QVHighlights submission fields)."""

    video: str
    query: str
    duration: float
    pred_relevant_windows: list[list[float]] = Field(description="[start s, end s, score], best first.")
    pred_saliency_scores: list[float] = Field(description="One score per 2-s clip of the video.")
    frames: list[FrameDecision]
    span_rule: str = Field(description="How frames became windows (this toolkit's rule; SeViLA defines none).")
    model: ModelInfo
    notice: str | None = None


class VideoQuestionRequest(ForwardRequest):
    """Multiple-choice question: the forward chain (selector -> Answerer), or the Answerer at given times."""

    timestamps: list[float] | None = Field(
        default=None, max_length=64,
        description=(
            "Optional: read exactly the frames shown at these times (seconds, e.g. keyframe times from "
            "localize_keyframes) instead of localizing; selector, num_frames, num_keyframes, start and end are "
            "then not used. Null or empty: run the selector."
        ),
    )


class VideoAnswerResult(ForwardResult):
    """Answer plus the localization it came from (``localization`` is null when ``timestamps`` were given)."""

    localization: LocalizeResult | None = Field(  # type: ignore[assignment]
        default=None, description="Keyframe selection (null when the frames were given by timestamps)."
    )


class ListSelectorsRequest(BaseModel):
    """No arguments."""

    model_config = ConfigDict(extra="forbid")


class SelectorInfo(BaseModel):
    """One keyframe selector."""

    name: str
    description: str
    needs_gold: bool = Field(default=False, description="Needs the correct `answer` (evaluation only).")


class SelectorList(BaseModel):
    """The keyframe selectors accepted by the ``selector`` argument."""

    selectors: list[SelectorInfo]
    default: str = DEFAULT_SELECTOR
