"""Training runs from configs: what ``sevila pretrain-localizer``, ``refine``, ``finetune``, ``pseudo-label`` and
``self-refine`` do, callable from Python with the same result (``docs/training.md``, "Python").

Each run is a class of named steps: check the run folder -> resolve the recipe -> load and pre-flight the data
-> load the model -> train. Nothing heavy loads before the cheap checks pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sevila_tools.errors import InputError
from sevila_tools.training.config import TrainConfig, resolve_config
from sevila_tools.training.runconfig import (
    PseudoLabelRunConfig,
    SelfRefineRunConfig,
    TrainData,
    TrainRunConfig,
)
from sevila_tools.training.runs import TrainResult

log = logging.getLogger("sevila_tools.training")
#: the stages of ``self-refine`` and their recipes' task names (the first one runs on the pre-training data)
STAGES = ("pretrain", "finetune", "refine")
#: self-refinement refines the pre-trained Localizer (the paper's PT+SR) unless ``refine.init`` says otherwise
SELF_REFINE_DEFAULTS = {"refine": {"init": "checkpoint"}}


class PseudoLabelSummary(BaseModel):
    """What ``sevila pseudo-label`` wrote (``OUT/summary.json`` adds the command and versions)."""

    model_config = ConfigDict(extra="allow")

    file: str = Field(description="The label file (pseudo_labels.jsonl).")
    records: int = Field(description="Label sets written (questions x epochs).")
    frames: int = Field(description="Labelled frames.")
    positive_rate: float = Field(description="Share of frames labelled yes.")
    epochs: int = Field(description="Label sets per question (one per refinement epoch).")

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the terminal table: records, frames and positive rate per question type, then all."""
        by_type = {**(self.model_extra or {}).get("by_qtype", {}), "all": self.model_dump()}
        return ["question type", "records", "frames", "positive rate"], [
            [q, str(r["records"]), str(r["frames"]), f"{r['positive_rate']:.3f}"] for q, r in by_type.items()]


class SelfRefineResult(BaseModel):
    """What ``sevila self-refine`` did, one record per iteration."""

    order: str = Field(description="paper (label, refine, fine-tune) or readme (fine-tune, label, refine).")
    iterations: list[dict[str, Any]] = Field(description="Per iteration: each part's result, validation.")
    complete: bool = Field(description="Every iteration finished.")
    checkpoint: str | None = Field(description="The final weights (the last part's best or last).")
    configs: dict[str, Any] = Field(description="The settings of each stage.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return self.model_dump(mode="json")

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the terminal table: one row per iteration."""
        def loss(part: dict[str, Any]) -> str:
            return "-" if part.get("last_loss") is None else f"{part['last_loss']:.4f}"

        rows = []
        for it in self.iterations:
            val, last = it.get("validation"), it.get(it["order"][-1], {})
            rows.append([str(it["iteration"]), f"{it.get('pseudo_labels', {}).get('positive_rate', 0):.3f}",
                         loss(it.get("refine", {})), loss(it.get("finetune", {})),
                         f"{val['metric']} {val['value']:.2f}" if val else "", str(last.get("weights"))])
        return ["iteration", "positive rate", "refine loss", "finetune loss", "validation", "weights"], rows


def missing_hint(cfg: TrainData, missing: int, total: int, videos: Path | None) -> str:
    """How to fix a pre-flight where videos are missing (every one of them: a path problem, not a few files)."""
    if missing < total:
        return "pass --skip-missing to go on without them"
    if videos is None:
        return "no --videos given: pass --videos DIR, the folder holding the videos"
    if cfg.video_map is None:
        return (f"check --videos and --video-ext {cfg.video_ext}; datasets whose ids are not file names "
                "(NExT-QA) also need --video-map map_vid_vidorID.json")
    return f"check --videos, --video-map and --video-ext {cfg.video_ext}"


class _Run:
    """Steps every training command shares: the accelerator, status lines, data, the model.

    ``on_status`` receives status lines and ``on_warning`` warnings (default: the ``sevila_tools.training`` log),
    on the main process only; ``command`` is recorded in ``summary.json``."""

    def __init__(
        self,
        cfg: Any,
        *,
        runtime: Any | None = None,
        accelerator: Any | None = None,
        progress: bool = True,
        on_status: Callable[[str], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        command: str | None = None,
    ) -> None:
        from sevila_tools.training.accel import make_accelerator

        self.cfg, self.runtime, self.progress, self.command = cfg, runtime, progress, command
        self.acc = accelerator if accelerator is not None else make_accelerator(cfg.device)
        self.on_status, self.on_warning = on_status or log.info, on_warning or log.warning

    def _say(self, msg: str) -> None:
        """A status line, or a warning when it starts with ``warning:`` (what the trainer writes to its log)."""
        if msg.startswith("warning: "):
            self.on_warning(msg.removeprefix("warning: "))
        else:
            self.on_status(msg)

    def say(self, msg: str) -> None:
        """A status line (main process only)."""
        if self.acc.is_main_process:
            self._say(msg)

    def check_out(self, marker: str) -> None:
        """Refuse (before any model loads) to start a new run over an existing one."""
        if not self.cfg.resume and (self.cfg.out / marker).exists():
            raise InputError(f"{self.cfg.out} already holds a run ({marker}); pass --resume or use another --out")

    def stage_config(self, task: str, dataset: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """The recipe of ``task`` on ``dataset`` (or ``cfg.recipe``) with the hyper-parameter overrides."""
        from sevila_tools.eval.datasets import check_dataset

        hp = self.cfg.overrides() if overrides is None else overrides
        return resolve_config(task, check_dataset(dataset), self.cfg.recipe, hp)

    def samples(
        self, path: Path, needs_answer: bool, limit: int | None, dataset: str | None = None,
        videos: Path | None = None,
    ) -> tuple[list[Any], Any]:
        """Annotations -> usable questions; pre-flight of missing and undecodable videos."""
        from sevila_tools.eval.datasets import load_annotations, preflight
        from sevila_tools.training.data import DataReport, usable_samples

        cfg = self.cfg
        videos = videos if videos is not None else cfg.videos
        samples = load_annotations(dataset or cfg.dataset, path, videos_root=videos, video_map=cfg.video_map,
                                   video_ext=cfg.video_ext)
        usable, dropped = usable_samples(samples, needs_answer, limit)
        report = DataReport(no_answer=dropped)
        if dropped:
            self.say(f"{dropped} of {len(samples)} questions have no gold answer or 2-5 options and are left out")
        check = preflight(usable, check_readable=True)
        report.missing_videos, report.unreadable_videos = list(check.missing), list(check.unreadable)
        if check.missing or check.unreadable:
            if not cfg.skip_missing or len(check.missing) == check.total_videos:
                raise InputError(f"{check.summary()}; {missing_hint(cfg, len(check.missing), check.total_videos, videos)}")
            self.say(f"skipping questions whose video is missing or unreadable: {check.summary()}")
            usable = list(check.ok)
        if not usable:
            raise InputError(f"no usable questions in {path}")
        report.questions = len(usable)
        self.say(f"{len(usable)} questions from {path}")
        return usable, report

    def load_model(self) -> Any:
        """The runtime: the one given, or loaded on this process's device."""
        if self.runtime is None:
            from sevila_tools.loading import load_runtime
            from sevila_tools.schemas import weights_notice
            from sevila_tools.training.accel import device_string

            c = self.cfg
            self.say(f"loading {c.model} ...")
            self.runtime = load_runtime(c.model, c.checkpoint, device_string(self.acc.device),
                                        trust_checkpoint=c.trust_checkpoint)
            if notice := weights_notice(self.runtime.random_weights):
                self.say(f"note: {notice}")
        return self.runtime

    def trainer_kw(self) -> dict[str, Any]:
        """Keyword arguments of the trainer shared by every stage."""
        cfg = self.cfg
        extra = {
            "annotations": str(cfg.annotations.resolve()),
            "videos": str(cfg.videos.resolve()) if cfg.videos else None,
            "limit": cfg.limit,
        }
        return dict(resume=cfg.resume, max_steps=getattr(cfg, "max_steps", None), accelerator=self.acc,
                    workers=getattr(cfg, "workers", 0), progress=self.progress, say=self._say,
                    extra_hparams=extra, skip_bad_videos=cfg.skip_missing)


class TrainRun(_Run):
    """One training stage (``sevila pretrain-localizer`` / ``refine`` / ``finetune``)."""

    cfg: TrainRunConfig

    def run(self) -> TrainResult:
        """check the run folder -> recipe -> data -> model -> :func:`~sevila_tools.training.train_stage`."""
        from sevila_tools.training.checkpoints import CHECKPOINT_NAME
        from sevila_tools.training.tasks import get_task
        from sevila_tools.training.trainer import train_stage

        cfg = self.cfg
        stage = self.stage_config(cfg.task, cfg.dataset)
        if cfg.labels is not None and not get_task(cfg.task).takes_labels:
            raise InputError(f"the {cfg.task} task does not read a labels file (--labels)")
        if cfg.labels is not None and not cfg.labels.is_file():
            raise InputError(f"labels file not found: {cfg.labels}")
        self.check_out(CHECKPOINT_NAME)
        needs = get_task(cfg.task).needs_answer
        samples, report = self.samples(cfg.annotations, needs, cfg.limit)
        val = self.samples(cfg.val_annotations, needs, None)[0] if cfg.val_annotations else []
        if not val and stage.validate_every_epoch:
            self.say("note: no --val-annotations: no validation and no best checkpoint (the official run "
                     "validates every epoch)")
        return train_stage(self.load_model(), samples, stage, cfg.out, labels=cfg.labels, val_samples=val,
                           data_report=report, command=self.command, **self.trainer_kw())


class PseudoLabelRun(_Run):
    """``sevila pseudo-label``: the frozen Answerer's labels for every question and refinement epoch."""

    cfg: PseudoLabelRunConfig

    def run(self) -> PseudoLabelSummary:
        """recipe ``refine-DATASET`` -> data -> model -> :func:`~sevila_tools.training.pseudo_label`."""
        from sevila_tools.training.labels import pseudo_label

        cfg = self.cfg
        stage = self.stage_config("refine", cfg.dataset)
        samples, report = self.samples(cfg.annotations, True, cfg.limit)
        summary = pseudo_label(self.load_model(), samples, cfg.out, stage, accelerator=self.acc,
                               progress_bar=self.progress, overwrite=cfg.overwrite, resume=cfg.resume,
                               skip_bad_videos=cfg.skip_missing, data_report=report, say=self._say,
                               command=self.command)
        if not self.acc.is_main_process:
            return PseudoLabelSummary(file=str(cfg.out), records=0, frames=0, positive_rate=0.0, epochs=0)
        return PseudoLabelSummary(**summary)


class SelfRefineRun(_Run):
    """``sevila self-refine``: pre-train, then label -> refine -> fine-tune per iteration (``order``)."""

    cfg: SelfRefineRunConfig

    def stage_configs(self) -> dict[str, TrainConfig]:
        """One config per stage: shared overrides, then ``STAGE.KEY`` ones (refine defaults to ``init=checkpoint``:
        it refines the pre-trained Localizer)."""
        hp = self.cfg.overrides()
        if self.cfg.recipe is not None:
            raise InputError("self-refine uses each stage's own recipe; change a stage with STAGE.KEY=VALUE")
        bad = sorted({k.split(".")[0] for k in hp if "." in k} - set(STAGES))
        if bad:
            raise InputError(f"unknown stage {bad[0]!r} in {bad[0]}.KEY; stages: {', '.join(STAGES)}")
        shared = {k: v for k, v in hp.items() if "." not in k}
        datasets = dict.fromkeys(STAGES, self.cfg.dataset) | {STAGES[0]: self.cfg.pretrain_dataset}
        out = {}
        for stage, dataset in datasets.items():
            own = {k.split(".", 1)[1]: v for k, v in hp.items() if k.startswith(stage + ".")}
            over = {**SELF_REFINE_DEFAULTS.get(stage, {}), **shared, **own}
            out[stage] = resolve_config(stage, _dataset(dataset), None, over)
        return out

    def run(self) -> SelfRefineResult:
        """configs -> run folder -> data (QA, validation, pre-training) -> model -> iterations."""
        from sevila_tools.training.self_refine import self_refine

        cfg = self.cfg
        configs = self.stage_configs()
        self.check_out("iter_1")
        samples = self.samples(cfg.annotations, True, cfg.limit)[0]
        val = self.samples(cfg.val_annotations, True, None)[0] if cfg.val_annotations else []
        pre: list[Any] = []
        pre_val: list[Any] = []
        if cfg.pretrain_annotations is not None:
            pre = self.samples(cfg.pretrain_annotations, False, None, cfg.pretrain_dataset, cfg.pretrain_videos)[0]
            if cfg.pretrain_val_annotations is not None:
                pre_val = self.samples(cfg.pretrain_val_annotations, False, None, cfg.pretrain_dataset,
                                       cfg.pretrain_videos)[0]
            else:
                self.say("note: no --pretrain-val-annotations: pre-training keeps its last epoch, not the best")
        else:
            self.say("no --pretrain-annotations: the Localizer of --checkpoint is used as the pre-trained one")
        result = self_refine(self.load_model(), samples, cfg.out, iterations=cfg.iterations, order=cfg.order,
                             pretrain=configs["pretrain"], finetune=configs["finetune"], refine=configs["refine"],
                             pretrain_samples=pre, pretrain_val_samples=pre_val, val_samples=val,
                             command=self.command, **self.trainer_kw())
        return SelfRefineResult(**result)


def _dataset(name: str) -> str:
    from sevila_tools.eval.datasets import check_dataset

    return check_dataset(name)


def run_train(cfg: TrainRunConfig, **kw: Any) -> TrainResult:
    """``sevila pretrain-localizer`` / ``refine`` / ``finetune`` in Python: ``TrainRun(cfg, **kw).run()``."""
    return TrainRun(cfg, **kw).run()


def run_pseudo_label(cfg: PseudoLabelRunConfig, **kw: Any) -> PseudoLabelSummary:
    """``sevila pseudo-label`` in Python."""
    return PseudoLabelRun(cfg, **kw).run()


def run_self_refine(cfg: SelfRefineRunConfig, **kw: Any) -> SelfRefineResult:
    """``sevila self-refine`` in Python."""
    return SelfRefineRun(cfg, **kw).run()
