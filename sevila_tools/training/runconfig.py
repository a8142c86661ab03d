"""What a training command is configured with: one pydantic model per command, the source of its options.

Every field has a one-sentence ``description`` (the help text) and optional CLI metadata in
``json_schema_extra={"cli": {...}}``. Hyper-parameters are not fields here: they come from the recipe
(``<task>-<dataset>``, or ``recipe``) with ``hparams`` overrides on top, each checked against
:class:`~sevila_tools.training.config.TrainConfig`. ``load_run_config`` reads ``--config FILE.yaml`` plus
``KEY=VALUE`` overrides into these models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sevila_tools.errors import InputError
from sevila_tools.training.config import hyper_parameters, parse_overrides, typed_overrides


def _cli(*flags: str, metavar: str | None = None, hidden: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"flags": list(flags)} if flags else {}
    if metavar:
        meta["metavar"] = metavar
    if hidden:
        meta["hidden"] = True
    return {"cli": meta}


class TrainModelOptions(BaseModel):
    """The shared model block (the same names and meaning as every other command's)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        "Salesforce/blip2-flan-t5-xl",
        description="tiny-random, a folder from `sevila convert`, or a BLIP-2 Flan-T5 id or folder.",
        json_schema_extra=_cli("--model", "-m", metavar="NAME"),
    )
    checkpoint: str = Field(
        "auto",
        description="SeViLA weights to start from: auto, none, a .pth/.safetensors file or hf://owner/repo/file.",
        json_schema_extra=_cli("--checkpoint", "-c", metavar="FILE"),
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.", json_schema_extra=_cli(metavar="NAME"))
    trust_checkpoint: bool = Field(
        False, description="Allow pickled objects in checkpoints (runs their code: trusted files only)."
    )


class TrainData(TrainModelOptions):
    """Data, output and recipe fields every training command shares."""

    dataset: str = Field(
        description="Dataset: nextqa, star, how2qa, tvqa, vlep or qvhighlights.",
        json_schema_extra=_cli("--dataset", "-d", metavar="NAME"),
    )
    annotations: Path = Field(
        description="Training annotation file.", json_schema_extra=_cli("--annotations", "-a", metavar="FILE")
    )
    out: Path = Field(
        description="Run folder (checkpoints, summary.json, logs).",
        json_schema_extra=_cli("--out", "-O", metavar="DIR"),
    )
    videos: Path | None = Field(None, description="Folder holding the videos.", json_schema_extra=_cli(metavar="DIR"))
    video_map: Path | None = Field(
        None, description="JSON {video id: path} (NExT-QA's map_vid_vidorID.json).",
        json_schema_extra=_cli(metavar="FILE"),
    )
    video_ext: str = Field(".mp4", description="Extension appended to video ids.", json_schema_extra=_cli(metavar="EXT"))
    recipe: str | None = Field(
        None, description="Recipe name or YAML file (default: TASK-DATASET).", json_schema_extra=_cli(metavar="NAME")
    )
    hparams: dict[str, Any] = Field(
        default_factory=dict,
        description="Hyper-parameter overrides over the recipe, e.g. lr=3e-5 (repeatable).",
        json_schema_extra=_cli("--set", metavar="KEY=VALUE"),
    )
    limit: int | None = Field(None, ge=1, description="Use only the first N questions.",
                              json_schema_extra=_cli(metavar="N"))
    skip_missing: bool = Field(False, description="Skip questions whose video is missing or broken.")
    resume: bool = Field(False, description="Continue the run in --out.")

    @field_validator("hparams", mode="before")
    @classmethod
    def _typed(cls, value: Any) -> dict[str, Any]:
        if isinstance(value, (list, tuple)):
            return parse_overrides([str(v) for v in value])
        if not isinstance(value, dict):
            raise InputError("hparams must be a mapping of hyper-parameter names to values")
        return typed_overrides(value)


class TrainRunConfig(TrainData):
    """``sevila pretrain-localizer`` / ``refine`` / ``finetune``: one training stage."""

    task: str = Field(
        description="Training task: pretrain, refine or finetune.", json_schema_extra=_cli(metavar="NAME", hidden=True)
    )
    val_annotations: Path | None = Field(
        None, description="Validation split: evaluated every epoch, best epoch kept.",
        json_schema_extra=_cli(metavar="FILE"),
    )
    labels: Path | None = Field(
        None, description="Labels from `sevila pseudo-label` (refine; default: on the fly).",
        json_schema_extra=_cli(metavar="FILE"),
    )
    max_steps: int | None = Field(None, ge=1, description="Stop after N optimizer steps (resumable).",
                                  json_schema_extra=_cli(metavar="N"))
    workers: int = Field(0, ge=0, description="DataLoader processes decoding videos.",
                         json_schema_extra=_cli(metavar="N"))

    @field_validator("hparams")
    @classmethod
    def _no_stage_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        staged = [k for k in value if "." in k]
        if staged:
            raise InputError(f"{staged[0]}: STAGE.KEY overrides are for self-refine; write {staged[0].split('.')[-1]}")
        return value


class PseudoLabelRunConfig(TrainData):
    """``sevila pseudo-label``: the frozen Answerer's per-frame labels (recipe ``refine-DATASET``)."""

    overwrite: bool = Field(False, description="Replace the labels already in --out.")


class SelfRefineRunConfig(TrainData):
    """``sevila self-refine``: pre-train, then label -> refine -> fine-tune per iteration (the paper's order)."""

    val_annotations: Path | None = Field(
        None, description="QA validation split: evaluated every epoch of refine and finetune.",
        json_schema_extra=_cli(metavar="FILE"),
    )
    iterations: int = Field(1, ge=1, description="Self-refinement iterations.",
                            json_schema_extra=_cli("--iterations", "-i", metavar="N"))
    order: Literal["paper", "readme"] = Field(
        "paper",
        description="paper: label, refine, fine-tune; readme: fine-tune, label, refine (official README).",
    )
    pretrain_annotations: Path | None = Field(
        None, description="Span annotations (QVHighlights): pre-train the Localizer first.",
        json_schema_extra=_cli(metavar="FILE"),
    )
    pretrain_videos: Path | None = Field(None, description="Videos of the pre-training set.",
                                         json_schema_extra=_cli(metavar="DIR"))
    pretrain_val_annotations: Path | None = Field(
        None, description="Pre-training validation split: frame accuracy every epoch, best epoch kept.",
        json_schema_extra=_cli(metavar="FILE"),
    )
    pretrain_dataset: str = Field("qvhighlights", description="Dataset of the pre-training set.",
                                  json_schema_extra=_cli(metavar="NAME"))
    max_steps: int | None = Field(None, ge=1, description="Stop each stage after N optimizer steps (resumable).",
                                  json_schema_extra=_cli(metavar="N"))
    workers: int = Field(0, ge=0, description="DataLoader processes decoding videos.",
                         json_schema_extra=_cli(metavar="N"))


def load_run_config(
    model: type[BaseModel], file: str | Path | None = None, pairs: list[str] | None = None, /, **given: Any
) -> Any:
    """``model`` from a YAML file (``--config``), explicit values and ``KEY=VALUE`` pairs, later ones winning.

    Keys that are fields of ``model`` set those fields; hyper-parameter keys (``lr``, ``refine.epochs``) go to
    ``hparams``, so one file or one pair list can hold both."""
    values: dict[str, Any] = {}
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise InputError(f"--config {path}: no such file")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"--config {path}: invalid YAML ({' '.join(str(exc).split())[:160]})") from None
        if not isinstance(loaded, dict):
            raise InputError(f"--config {path}: expected a mapping of settings")
        values = _split(model, loaded)
    given = {k: v for k, v in given.items() if v is not None}
    hp = {**values.pop("hparams", {}), **typed_overrides(given.pop("hparams", None) or {})}
    values.update(given)
    for key, value in _pairs(pairs).items():
        if key in model.model_fields and key != "hparams":
            values[key] = value
        else:
            hp[key] = value
    return model(**values, hparams=hp)


def _split(model: type[BaseModel], loaded: dict[str, Any]) -> dict[str, Any]:
    """Config-file keys: model fields stay, hyper-parameters (top level or under ``hparams``) move to hparams."""
    fields = {k: v for k, v in loaded.items() if k in model.model_fields and k != "hparams"}
    hp = dict(loaded.get("hparams") or {})
    hp.update({k: v for k, v in loaded.items() if k not in model.model_fields})
    return {**fields, "hparams": typed_overrides(hp)}


def _pairs(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` items as YAML scalars (hyper-parameter keys typed by :func:`parse_overrides`)."""
    out: dict[str, Any] = {}
    hp_keys = set(hyper_parameters())
    hp_pairs = []
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"expected key=value, got {pair!r}")
        if key.split(".")[-1] in hp_keys or "." in key:
            hp_pairs.append(f"{key}={value}")
        else:
            out[key] = yaml.safe_load(value) if value.strip() else None
    out.update(parse_overrides(hp_pairs))
    return out
