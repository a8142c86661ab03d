"""What an ablation is: the grid, the selectors, the answerers, and the settings they expand to."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, field_validator, model_validator

from sevila_tools.errors import InputError

from ..datasets import get_dataset
from ..runner import RunOptions

DEFAULT_GRID = "8:1,16:1,16:4,32:4,32:8,64:8"
MAX_FRAMES = 256
MAX_KEYFRAMES = 64


def _grid_entry(item: Any) -> tuple[int, int]:
    if isinstance(item, str):
        parts = item.strip().split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise InputError(f"bad --grid entry {item.strip()!r}: expected FRAMES:KEYFRAMES with positive integers, e.g. 32:4")
        return int(parts[0]), int(parts[1])
    try:
        n, k = (int(x) for x in item)
    except (TypeError, ValueError):
        raise InputError(f"bad grid entry {item!r}: expected (frames, keyframes)") from None
    return n, k


def parse_grid(grid: str | Iterable[Any]) -> list[tuple[int, int]]:
    """``"8:1,16:4"`` (or pairs) -> ``[(8, 1), (16, 4)]``; duplicates dropped; one-line errors."""
    items = [p.strip() for p in grid.split(",")] if isinstance(grid, str) else list(grid)
    if not items or all(isinstance(p, str) and not p for p in items):
        raise InputError("empty --grid; expected FRAMES:KEYFRAMES[,...], e.g. 32:4,16:4")
    out: list[tuple[int, int]] = []
    for item in items:
        n, k = _grid_entry(item)
        if n < 1 or k < 1:
            raise InputError(f"bad --grid entry {n}:{k}: frames and keyframes must be >= 1")
        if n > MAX_FRAMES or k > MAX_KEYFRAMES:
            raise InputError(f"bad --grid entry {n}:{k}: at most {MAX_FRAMES} frames and {MAX_KEYFRAMES} keyframes")
        if k > n:
            raise InputError(f"bad --grid entry {n}:{k}: keyframes ({k}) exceed frames ({n})")
        if (n, k) not in out:
            out.append((n, k))
    return out


def parse_names(value: str | Iterable[str] | None) -> list[str] | None:
    """``"a,b"`` / ``["a", "b,c"]`` -> ``["a", "b", "c"]`` (stripped, duplicates dropped); ``None`` stays."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in str(v).split(",")]
    return list(dict.fromkeys(p.strip() for p in parts if p.strip()))


class AblationConfig(RunOptions):
    """Everything that defines one ablation (recorded in ``results.json``).

    ``selectors=None``: every registered selector that can run (``docs/eval.md``). ``selector_options`` is the
    flat option dict; each selector takes the keys it declares (``long_video`` defaults to ``sliding`` here)."""

    selectors: list[str] | None = Field(None, description="Selectors, comma separated (default: every registered "
                                        "one that can run here).", json_schema_extra={"cli": {
                                            "flags": ["--selector", "-s"], "metavar": "NAMES"}})
    selector_options: dict[str, Any] = Field(default_factory=lambda: {"long_video": "sliding"},
                                             description="Selector options by key.")
    grid: list[tuple[int, int]] = Field(default_factory=lambda: parse_grid(DEFAULT_GRID),
                                        description=f"FRAMES:KEYFRAMES settings (default {DEFAULT_GRID}).",
                                        json_schema_extra={"cli": {"metavar": "N:K,..."}})
    answerers: list[str] = Field(default_factory=lambda: ["concat"], description="Answer strategies, comma "
                                 "separated.", json_schema_extra={"cli": {"flags": ["--answerer"], "metavar": "NAMES"}})

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, value: Any) -> Any:
        return parse_grid(value)

    @field_validator("selectors", mode="before")
    @classmethod
    def _selectors(cls, value: Any) -> Any:
        names = parse_names(value)
        if names is not None and not names:
            raise ValueError("no selector given")
        return names

    @field_validator("answerers", mode="before")
    @classmethod
    def _answerers(cls, value: Any) -> Any:
        from sevila_tools.answering import get_answerer

        names = parse_names(value)
        if not names:
            raise ValueError("no answerer given (concat, voting)")
        for name in names:
            get_answerer(name)
        return names

    @model_validator(mode="after")
    def _check(self) -> AblationConfig:
        spec = get_dataset(self.dataset)
        self.dataset = spec.name
        if spec.task != "multiple_choice":
            raise ValueError(f"ablate compares keyframe selectors on multiple-choice datasets, not {spec.name}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        return self

    def selector_names(self) -> list[str]:
        """The selectors this ablation may run (the selector options given are checked against them)."""
        from sevila_tools.plugins import selectors

        return list(self.selectors or selectors.names())

    def flat_options(self) -> dict[str, Any]:
        """The options every selector may pick from (the run seed and checkpoint trust included)."""
        return {"seed": self.seed, "trust_checkpoint": self.trust_checkpoint, **self.selector_options}


@dataclass
class Setting:
    """One (selector, frames, keyframes, answerer) combination."""

    selector: str
    frames: int
    keyframes: int
    answerer: str
    grid_entries: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """File-name-safe id, e.g. ``clip_16to4_concat``."""
        return f"{self.selector}_{self.frames}to{self.keyframes}_{self.answerer}"

    @property
    def label(self) -> str:
        return f"{self.selector} {self.frames}→{self.keyframes} {self.answerer}"


def candidates_for(cls: Any, frames: int, keyframes: int, options: dict[str, Any] | None = None) -> int:
    """Frames a selector class decodes for one grid entry, given the options it declares (the oracle's
    ``oracle_frames``); a selector without such options decodes what ``num_candidates`` says."""
    import inspect

    params = inspect.signature(cls.num_candidates).parameters
    own = {k: v for k, v in (options or {}).items() if k in params and k in cls.Options.model_fields}
    return int(cls.num_candidates(frames, keyframes, **own))


def plan_settings(
    selectors: Sequence[str], grid: Sequence[tuple[int, int]], answerers: Sequence[str],
    options: dict[str, Any] | None = None,
) -> list[Setting]:
    """Rows in table order: selector, grid entry, answerer. A selector that decodes its own number of frames
    (``num_candidates``: uniform's n = k, the oracle's 4 uniform frames of the paper's Table 9) collapses grid
    entries with the same result into one setting; its keyframes never exceed the frames it decodes."""
    from sevila_tools.selectors import get_selector_class

    out: dict[tuple, Setting] = {}
    for sel in selectors:
        cls = get_selector_class(sel)
        for n, k in grid:
            for ans in answerers:
                frames = candidates_for(cls, n, k, options)
                key = (sel, frames, min(k, frames), ans)
                if key not in out:
                    out[key] = Setting(*key)
                out[key].grid_entries.append(f"{n}:{k}")
    return list(out.values())


def default_selectors(
    has_gold: bool, options: dict[str, Any] | None = None, random_weights: bool = False
) -> tuple[list[str], dict[str, str]]:
    """Every registered selector by ``rank``, except those that cannot run here; returns (names, skipped)."""
    from sevila_tools.selectors import REGISTRY

    skipped: dict[str, str] = {}
    names = []
    for cls in sorted(REGISTRY.values(), key=lambda c: (c.rank, c.name)):
        why = "needs gold answers (the annotations have none)" if cls.needs_gold and not has_gold else None
        why = why or cls.unavailable_reason(dict(options or {}), random_weights)
        if why:
            skipped[cls.name] = why
        else:
            names.append(cls.name)
    return names, skipped
