"""What a training command is configured with: one pydantic model per command, the source of its options.

Every field has a one-sentence ``description`` (the help text) and optional CLI metadata
(:class:`~sevila_tools.schemas.CLI`). The model block is the shared :class:`~sevila_tools.schemas.ModelOptions`;
its ``decoder`` is the stages' video reader. Hyper-parameters come from the recipe (``<task>-<dataset>``, or
``recipe``) with ``hparams`` on top, each checked against :class:`~sevila_tools.training.config.TrainConfig`. A
setting that is not a field of the config is a hyper-parameter (``lr``; for self-refine also ``finetune.lr`` or
``finetune: {lr: ...}``), so one YAML file or one ``KEY=VALUE`` list holds both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sevila_tools.errors import InputError
from sevila_tools.schemas import ModelOptions, cli_flags, parse_pairs, read_settings
from sevila_tools.training.config import TrainConfig, hyper_parameters, typed_overrides

#: the hyper-parameters that get a flag on every training command (the model block has ``--decoder``)
HYPER_FLAGS = tuple(k for k in hyper_parameters() if k not in ModelOptions.model_fields)


def _hparams(help: str, fields: tuple[str, ...] = HYPER_FLAGS) -> Any:
    """The ``hparams`` field: every hyper-parameter in ``fields`` gets a flag (``docs/cli.md``)."""
    return Field(default_factory=dict, description=help, json_schema_extra=cli_flags(model=TrainConfig, fields=fields))


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    """``{"finetune": {"lr": 1}}`` -> ``{"finetune.lr": 1}`` (one level of stage nesting)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        out.update({f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {str(key): value})
    return out


class TrainData(ModelOptions):
    """Data, output and recipe fields every training command shares (plus the shared model block)."""

    dataset: str = Field(description="Dataset name.", json_schema_extra=cli_flags("--dataset", "-d", metavar="NAME"))
    annotations: Path = Field(description="Training annotation file.",
                              json_schema_extra=cli_flags("--annotations", "-a", metavar="FILE"))
    out: Path = Field(description="Run folder (checkpoints, summary.json, logs).",
                      json_schema_extra=cli_flags("--out", "-O", metavar="DIR"))
    videos: Path | None = Field(None, description="Folder holding the videos.", json_schema_extra=cli_flags(metavar="DIR"))
    video_map: Path | None = Field(None, description="JSON {video id: path} (NExT-QA's map_vid_vidorID.json).",
                                   json_schema_extra=cli_flags(metavar="FILE"))
    video_ext: str = Field(".mp4", description="Extension appended to video ids.", json_schema_extra=cli_flags(metavar="EXT"))
    recipe: str | None = Field(None, description="Recipe name or YAML file (default: TASK-DATASET).",
                               json_schema_extra=cli_flags(metavar="NAME"))
    limit: int | None = Field(None, ge=1, description="Use only the first N questions.")
    skip_missing: bool = Field(False, description="Skip questions whose video is missing or broken.",
                               json_schema_extra=cli_flags("--skip-missing"))
    resume: bool = Field(False, description="Continue the run in --out.", json_schema_extra=cli_flags("--resume"))
    hparams: dict[str, Any] = _hparams("Hyper-parameters over the recipe (TrainConfig fields), e.g. lr=3e-5.")

    @model_validator(mode="before")
    @classmethod
    def _hyper_parameters(cls, data: Any) -> Any:
        """Settings that are not fields are hyper-parameters (they win over ``hparams``); a ``decoder`` there
        is the model block's."""
        if not isinstance(data, dict):
            return data
        data, hp = dict(data), data.get("hparams") or {}
        if not isinstance(hp, dict):
            raise InputError("hparams must be a mapping of hyper-parameter names to values")
        hp = _flat(hp)
        for key in [k for k in data if k not in cls.model_fields]:
            hp.update(_flat({key: data.pop(key)}))
        if "decoder" in hp:
            data.setdefault("decoder", hp.pop("decoder"))
        return {**data, "hparams": typed_overrides(hp)}

    def overrides(self) -> dict[str, Any]:
        """The hyper-parameter overrides of every stage: ``hparams`` plus the model block's decoder."""
        return {**self.hparams, "decoder": self.decoder}


class TrainRunConfig(TrainData):
    """``sevila pretrain-localizer`` / ``refine`` / ``finetune``: one training stage."""

    task: str = Field(description="Training task: pretrain, refine or finetune.", json_schema_extra=cli_flags(hidden=True))
    val_annotations: Path | None = Field(None, description="Validation split: evaluated every epoch, best epoch kept.",
                                         json_schema_extra=cli_flags(metavar="FILE"))
    labels: Path | None = Field(None, description="Labels from `sevila pseudo-label` (refine; default: on the fly).",
                                json_schema_extra=cli_flags(metavar="FILE"))
    max_steps: int | None = Field(None, ge=1, description="Stop after N optimizer steps (resumable).")
    workers: int = Field(0, ge=0, description="DataLoader processes decoding videos.")

    @field_validator("hparams")
    @classmethod
    def _no_stage_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        staged = [k for k in value if "." in k]
        if staged:
            raise InputError(f"{staged[0]}: STAGE.KEY overrides are for self-refine; write {staged[0].split('.')[-1]}")
        return value


class PretrainRunConfig(TrainRunConfig):
    """``sevila pretrain-localizer``: the Localizer on span annotations (recipe ``pretrain-qvhighlights``)."""

    task: Literal["pretrain"] = Field("pretrain", description="Training task.", json_schema_extra=cli_flags(hidden=True))


class RefineRunConfig(TrainRunConfig):
    """``sevila refine``: the Localizer on the frozen Answerer's pseudo-labels (recipe ``refine-DATASET``)."""

    task: Literal["refine"] = Field("refine", description="Training task.", json_schema_extra=cli_flags(hidden=True))


class FinetuneRunConfig(TrainRunConfig):
    """``sevila finetune``: the Answerer on the frozen Localizer's keyframes (recipe ``finetune-DATASET``)."""

    task: Literal["finetune"] = Field("finetune", description="Training task.", json_schema_extra=cli_flags(hidden=True))


class PseudoLabelRunConfig(TrainData):
    """``sevila pseudo-label``: the frozen Answerer's per-frame labels (recipe ``refine-DATASET``)."""

    overwrite: bool = Field(False, description="Replace the labels already in --out.",
                            json_schema_extra=cli_flags("--overwrite"))
    hparams: dict[str, Any] = _hparams("Hyper-parameters over the recipe refine-DATASET, e.g. seed=3.", (
        "epochs", "num_frames", "seed", "augment", "frozen_dropout", "batch_size", "prompts"))


class SelfRefineRunConfig(TrainData):
    """``sevila self-refine``: pre-train, then label -> refine -> fine-tune per iteration (the paper's order)."""

    hparams: dict[str, Any] = _hparams("Hyper-parameters of every stage, or of one as STAGE.KEY (finetune.lr).")
    val_annotations: Path | None = Field(None, description="QA validation split: evaluated every epoch of refine "
                                         "and finetune.", json_schema_extra=cli_flags(metavar="FILE"))
    iterations: int = Field(1, ge=1, description="Self-refinement iterations.",
                            json_schema_extra=cli_flags("--iterations", "-i"))
    order: Literal["paper", "readme"] = Field(
        "paper", description="paper: label, refine, fine-tune; readme: fine-tune, label, refine (official README).")
    pretrain_annotations: Path | None = Field(None, description="Span annotations (QVHighlights): pre-train the "
                                              "Localizer first.", json_schema_extra=cli_flags(metavar="FILE"))
    pretrain_videos: Path | None = Field(None, description="Videos of the pre-training set.",
                                         json_schema_extra=cli_flags(metavar="DIR"))
    pretrain_val_annotations: Path | None = Field(
        None, description="Pre-training validation split: frame accuracy every epoch, best epoch kept.",
        json_schema_extra=cli_flags(metavar="FILE"))
    pretrain_dataset: str = Field("qvhighlights", description="Dataset of the pre-training set.",
                                  json_schema_extra=cli_flags(metavar="NAME", plugin="datasets"))
    max_steps: int | None = Field(None, ge=1, description="Stop each stage after N optimizer steps (resumable).")
    workers: int = Field(0, ge=0, description="DataLoader processes decoding videos.")


def load_run_config(model: type[TrainData], file: str | Path | None = None, pairs: list[str] | None = None, /,
                    **given: Any) -> Any:
    """``model`` from a settings file (``--config``), explicit values and ``KEY=VALUE`` pairs, later ones winning:
    ``sevila finetune --config FILE KEY=VALUE`` in Python."""
    values = read_settings(file) if file is not None else {}
    values.update({k: v for k, v in given.items() if v is not None})
    values.update(parse_pairs(pairs, "an override"))
    return model.model_validate(values)
