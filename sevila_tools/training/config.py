"""The one training configuration model, recipes (YAML in ``sevila_tools.recipes``) and ``key=value`` overrides."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, field_validator

from sevila_tools.errors import InputError

RECIPE_PACKAGE = "sevila_tools.recipes"
#: recipe keys that are not hyper-parameters
RECIPE_META = ("official", "source", "sources")
#: hyper-parameters that may change between a run and its resumption
RESUME_EXEMPT = frozenset({"save_every", "decoder", "val_batch_size"})


def _opt(default: Any, help: str, flag: str | None = None, short: str | None = None, **kw: Any) -> Any:
    """A hyper-parameter field; ``flag``/``short`` become its CLI flags (``cli.flags``, default ``--field-name``)."""
    flags = [f for f in (flag, short) if f]
    extra = {"cli": {"flags": flags}} if flags else None
    return Field(default, description=help, json_schema_extra=extra, **kw)


class TrainConfig(BaseModel):
    """Hyper-parameters of one training task; every field is also a CLI flag and a ``key=value`` override.

    Recipes (``recipes/*.yaml``) give the official values; ``official`` lists the official value of every
    field whose recipe default deliberately differs (see ``docs/training.md``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: str = Field(description="Registered training task (pretrain, refine, finetune).")
    dataset: str = Field(description="Dataset name.")
    recipe: str | None = Field(None, description="Recipe the values came from.")
    prompts: str = _opt("default", "Prompt style (default: the dataset's).")
    epochs: int = _opt(10, "Epochs.", ge=1)
    batch_size: int = _opt(16, "Questions per iteration and process.", ge=1)
    global_batch: int | None = _opt(
        None, "Questions per optimizer step over all processes (reached by accumulation).", ge=1
    )
    accum_steps: int | None = _opt(None, "Iterations per optimizer step (overrides global_batch).", ge=1)
    reference_processes: int = _opt(1, "Processes of the official run (gradient scale).", ge=1)
    warmup_steps: int = _opt(500, "Warm-up length in optimizer steps (epoch 0).", ge=0)
    lr: float = _opt(3e-5, "Peak learning rate.", gt=0)
    min_lr: float = _opt(0.0, "Cosine floor.", ge=0)
    warmup_lr: float = _opt(1e-8, "Warm-up start learning rate.", ge=0)
    weight_decay: float = _opt(0.05, "AdamW weight decay.", ge=0)
    beta1: float = _opt(0.9, "AdamW beta1.", ge=0, lt=1)
    beta2: float = _opt(0.999, "AdamW beta2.", ge=0, lt=1)
    adam_eps: float = _opt(1e-8, "AdamW epsilon.", gt=0)
    num_frames: int = _opt(4, "Random frames per question.", flag="--frames", short="-n", ge=1, le=256)
    num_keyframes: int = _opt(
        4, "Keyframes the Localizer keeps.", flag="--keyframes", short="-k", ge=1, le=64
    )
    validate_every_epoch: bool = _opt(
        True, "Validate after every epoch (needs --val-annotations).", flag="--validate"
    )
    val_frames: int = _opt(32, "Uniform candidate frames per validation question.", ge=1, le=256)
    val_batch_size: int = _opt(8, "Validation questions per forward batch.", ge=1)
    seed: int = _opt(42, "Seed of data order, frame draws, crops and dropout.")
    init: Literal["base", "checkpoint", "answerer-copy"] = _opt(
        "base",
        "Localizer start: base (BLIP-2's Q-Former, official), checkpoint (as loaded) or answerer-copy.",
    )
    augment: bool = _opt(True, "RandomResizedCrop(224, 0.5-1, bicubic), one crop per clip.")
    frozen_dropout: bool = _opt(True, "Dropout on in the frozen Answerer/Localizer passes (official).")
    dropout: bool = _opt(True, "Dropout on in the trained branch and T5.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _opt(
        "auto", "auto (bf16 where supported, else fp16), bf16, fp16 (+ gradient scaler), fp32."
    )
    drop_last: bool = _opt(True, "Drop an incomplete last optimizer step of an epoch.")
    decoder: Literal["auto", "decord", "pyav"] = _opt("auto", "Video reader.")
    save_every: int = _opt(0, "Also checkpoint every N optimizer steps.", ge=0)
    trained_only: bool = _opt(False, "Checkpoint only the trained branch.")
    short_videos: Literal["keep", "skip"] = _opt(
        "keep", "Videos clearly shorter than annotated: keep (official) or skip."
    )
    official: dict[str, Any] = Field(default_factory=dict, description="Official values where ours differ.")
    _recipe_values: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("prompts")
    @classmethod
    def _known_style(cls, value: str) -> str:
        from sevila_tools.prompts import get_prompt_style

        return get_prompt_style(value).name

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON values (stored in checkpoints and summaries)."""
        return self.model_dump(mode="json")

    def deviations(self) -> list[dict[str, Any]]:
        """Every hyper-parameter whose value differs from the official run's, with both values."""
        if not self._recipe_values:
            return []
        reference = {**self._recipe_values, **self.official}
        used = self.to_dict()
        return [
            {"option": k, "official": reference[k], "used": used[k]}
            for k in sorted(reference)
            if k in used and used[k] != reference[k]
        ]


def hyper_parameters() -> dict[str, Any]:
    """The fields a user sets (CLI flags and overrides), name -> pydantic field info."""
    skip = {"task", "dataset", "recipe", "official"}
    return {k: v for k, v in TrainConfig.model_fields.items() if k not in skip}


def _invalid(exc: ValidationError) -> InputError:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', '').removeprefix('Value error, ')}")
    return InputError("invalid training settings: " + "; ".join(parts))


def _unknown(keys: list[str]) -> InputError:
    known = list(hyper_parameters())
    hints = [
        f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, known, 1)) else k for k in keys
    ]
    return InputError(f"unknown hyper-parameters: {', '.join(hints)}; known: {', '.join(known)}")


# ---------------------------------------------------------------------------------------------- recipes
def recipe_names() -> list[str]:
    """Names of the installed recipes (``<task>-<dataset>``)."""
    from importlib.resources import files

    return sorted(p.name[:-5] for p in files(RECIPE_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def read_recipe(name_or_path: str | Path) -> tuple[str, dict[str, Any]]:
    """``(name, values)`` of an installed recipe or a YAML file (keys are checked)."""
    from importlib.resources import files

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        name, text = path.stem, path.read_text(encoding="utf-8")
    else:
        entry = files(RECIPE_PACKAGE) / f"{name_or_path}.yaml"
        if not entry.is_file():
            raise InputError(
                f"no recipe {name_or_path!r}; installed: {', '.join(recipe_names())} (or pass a .yaml file)"
            )
        name, text = str(name_or_path), entry.read_text(encoding="utf-8")
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"recipe {name_or_path}: invalid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise InputError(f"recipe {name_or_path}: expected a mapping of settings")
    unknown = [k for k in values if k not in TrainConfig.model_fields and k not in RECIPE_META]
    if unknown:
        raise _unknown(unknown)
    return name, values


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["lr=3e-5", "epochs=2"]`` -> ``{"lr": 3e-05, "epochs": 2}`` (JSON values, else text), typed and checked."""
    from sevila_tools.schemas import parse_pairs

    return typed_overrides(parse_pairs(pairs, "a hyper-parameter"))


def typed_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameter overrides checked and typed by :class:`TrainConfig` (``STAGE.KEY`` names allowed)."""
    fields = hyper_parameters()
    out = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = [k for k in out if k.split(".")[-1] not in fields]
    if unknown:
        raise _unknown(unknown)
    for key, value in out.items():
        if value is None:
            continue
        try:
            out[key] = TypeAdapter(fields[key.split(".")[-1]].annotation).validate_python(value)
        except ValidationError as exc:
            raise InputError(f"{key}={value!r}: {exc.errors()[0]['msg']}") from None
    return out


def resolve_config(
    task: str,
    dataset: str,
    recipe: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """The recipe of ``task`` on ``dataset`` (default ``<task>-<dataset>``) with the overrides applied.

    ``None`` override values are ignored; the recipe must be for this task and dataset."""
    from sevila_tools.eval.datasets import get_dataset

    name, values = read_recipe(recipe if recipe is not None else f"{task}-{dataset}")
    values.setdefault("prompts", get_dataset(dataset).prompt_style)
    official = dict(values.pop("official", None) or {})
    values.pop("source", None)
    values.pop("sources", None)
    for key, want in (("task", task), ("dataset", dataset)):
        if values.setdefault(key, want) != want:
            raise InputError(f"recipe {name} is for {key} {values[key]!r}, not {want!r}")
    extra = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = [k for k in extra if k not in hyper_parameters()]
    if unknown:
        raise _unknown(unknown)
    try:
        cfg = TrainConfig(**{**values, **extra, "recipe": name, "official": official})
        base = TrainConfig(**{**values, "recipe": name}).to_dict()
    except ValidationError as exc:
        raise _invalid(exc) from None
    cfg._recipe_values = {k: v for k, v in base.items() if k in hyper_parameters()}
    return cfg
