"""The trainer, cut into named steps; what a stage trains and measures comes from its :class:`TrainingTask`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sevila_tools.checkpoint import TOOLKIT_FORMAT, apply_state_dict
from sevila_tools.errors import InputError
from sevila_tools.modeling import branch_of_key
from sevila_tools.provenance import file_sha256
from sevila_tools.training.accel import gather, make_accelerator, mean_over_processes
from sevila_tools.training.checkpoints import (
    BEST_NAME,
    CHECKPOINT_FORMAT_VERSION,
    CHECKPOINT_NAME,
    atomic_torch_save,
    branch_state_dict,
    check_resume,
    provenance,
    read_training_checkpoint,
    rng_state,
    seed_epoch,
    set_rng_state,
)
from sevila_tools.training.config import RESUME_EXEMPT, TrainConfig
from sevila_tools.training.data import DataReport, DrawSpec, EpochData, Item, collate
from sevila_tools.training.frozen import (
    autocast,
    build_pipeline,
    encoded_of,
    grad_scaler,
    query_of,
    resolve_precision,
    set_train_modes,
)
from sevila_tools.training.labelfile import LabelSet, read_labels
from sevila_tools.training.localizer_init import load_base_localizer
from sevila_tools.training.optim import param_groups
from sevila_tools.training.runs import (
    MetricsFile,
    QuietRepeats,
    RunLog,
    TrainResult,
    epoch_losses,
    progress,
    write_summary,
)
from sevila_tools.training.sampling import (
    batch_layout,
    learning_warning,
    linear_warmup_cosine_lr,
    step_plan,
)
from sevila_tools.training.tasks import Batch, TrainingTask, get_task


class _LossModule(nn.Module):
    """The task's loss as a module holding the model (so DDP sees its parameters)."""

    def __init__(self, task: TrainingTask) -> None:
        super().__init__()
        self.model = task.runtime.model
        self.__dict__["task"] = task  # not a submodule

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.task.loss(batch)


class Trainer:
    """Trains one task in place on ``runtime.model``; writes ``checkpoint.pth`` (resumable, every epoch),
    ``checkpoint_best.pth`` (best validation), ``metrics.jsonl``, ``train.log`` and ``summary.json`` to
    ``out_dir``. :meth:`train` runs the steps in order; see ``docs/training.md``."""

    def __init__(
        self,
        runtime: Any,
        samples: Sequence[Any],
        config: TrainConfig,
        out_dir: str | Path,
        *,
        labels: str | Path | Mapping[str, Sequence[LabelSet]] | None = None,
        val_samples: Sequence[Any] | None = None,
        resume: bool = False,
        max_steps: int | None = None,
        accelerator: Any | None = None,
        workers: int = 0,
        progress: bool = True,
        say: Callable[[str], None] | None = None,
        extra_hparams: Mapping[str, Any] | None = None,
        data_report: DataReport | None = None,
        skip_bad_videos: bool = False,
        command: str | None = None,
    ) -> None:
        self.runtime, self.samples, self.cfg, self.out = runtime, list(samples), config, Path(out_dir)
        self.labels_arg, self.val_samples = labels, list(val_samples or [])
        self.resume_requested, self.max_steps = resume, max_steps
        self.acc = accelerator if accelerator is not None else make_accelerator(runtime.device)
        self.workers, self.show_progress, self.say, self.command = workers, progress, say, command
        self.extra, self.skip_bad_videos = dict(extra_hparams or {}), skip_bad_videos
        self.final: dict[str, Any] | None = None
        self.report = data_report or DataReport(questions=len(self.samples))
        self.report.short_policy = config.short_videos
        self.state: dict[str, Any] = {
            "epoch": 0,
            "step_in_epoch": 0,
            "step": 0,
            "complete": False,
            "best": None,
            "validation": [],
        }
        self.saved: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------------ steps
    def setup(self) -> None:
        """Task, pipeline, labels, batch layout, precision, run files; refuse to overwrite a run."""
        cfg, acc = self.cfg, self.acc
        self.rank, self.world, self.main = acc.process_index, acc.num_processes, acc.is_main_process
        task_cls = get_task(cfg.task)
        if not self.samples:
            raise InputError(f"no usable questions to train the {cfg.task} task on")
        self.pipeline = build_pipeline(self.runtime, cfg.prompts, cfg.decoder)
        self.task = task_cls(cfg, self.pipeline)
        self.task.check(self.samples)
        self.log = RunLog(self.out, self.say, self.main)
        self.metrics = MetricsFile(self.out, self.main)
        self.label_map, label_source = self._labels(task_cls)
        self.layout = batch_layout(
            cfg.batch_size, self.world, cfg.global_batch, cfg.accum_steps, cfg.reference_processes
        )
        self.precision = resolve_precision(cfg.precision, self.runtime.device)
        warning = learning_warning(len(self.samples), self.layout, cfg.epochs, cfg.lr, cfg.min_lr,
                                   cfg.warmup_lr, cfg.warmup_steps, cfg.drop_last)
        self.warnings = [warning] if warning else []
        self.ckpt_path, self.best_path = self.out / CHECKPOINT_NAME, self.out / BEST_NAME
        self.sources = dict(self.runtime.info.get("sources", {}))
        self.hparams = {
            **cfg.to_dict(),
            "model": self.runtime.info.get("model"),
            "start_checkpoint": self.runtime.info.get("checkpoint"),
            "world_size": self.world,
            "num_samples": len(self.samples),
            "num_val_samples": len(self.val_samples),
            "labels": label_source,
            **self.extra,
        }
        if not self.resume_requested and self.ckpt_path.exists():
            raise InputError(
                f"{self.out} already holds a training run ({CHECKPOINT_NAME}); pass --resume or use another --out"
            )
        if label_source:
            self.log(f"pseudo-labels: {label_source}")
        for line in self.warnings:
            self.log(line)

    def _labels(
        self, task_cls: type[TrainingTask]
    ) -> tuple[Mapping[str, Sequence[LabelSet]] | None, str | None]:
        given = self.labels_arg
        if given is None:
            return None, ("on the fly (frozen answerer)" if task_cls.takes_labels else None)
        if not task_cls.takes_labels:
            raise InputError(f"the {task_cls.name} task does not read a labels file")
        label_map = read_labels(given) if isinstance(given, (str, Path)) else given
        missing = [s.qid for s in self.samples if s.qid not in label_map]
        if missing:
            raise InputError(
                f"{len(missing)} of {len(self.samples)} questions have no pseudo-labels "
                f"(first: {', '.join(map(str, missing[:3]))}); label them or pass --limit"
            )
        if min(len(v) for v in label_map.values()) < self.cfg.epochs:
            self.log("note: the labels file holds fewer label sets than epochs; some epochs reuse its frames")
        return label_map, str(given) if isinstance(given, (str, Path)) else "in-memory labels"

    def resume(self) -> bool:
        """Load ``checkpoint.pth`` when resuming (same settings required); True when that run is complete."""
        if not self.resume_requested:
            return False
        if not self.ckpt_path.is_file():
            raise InputError(f"nothing to resume: {self.ckpt_path} does not exist")
        saved = read_training_checkpoint(self.ckpt_path)
        check_resume(saved["hparams"], self.hparams, self.ckpt_path, RESUME_EXEMPT)
        sd = dict(saved["model"])
        apply_state_dict(self.runtime.model, sd, sorted({branch_of_key(k) for k in sd} - {None}))  # type: ignore[arg-type]
        self.sources = dict(saved.get("sources", self.sources))
        self.saved = saved
        for key in self.state:
            self.state[key] = saved.get(key, self.state[key])
        if saved.get("complete"):
            if saved.get("best") is not None and self.best_path.is_file():
                best = dict(read_training_checkpoint(self.best_path)["model"])
                apply_state_dict(self.runtime.model, best, sorted({branch_of_key(k) for k in best} - {None}))  # type: ignore[arg-type]
            summary = self.out / "summary.json"
            if summary.is_file():
                self.final = json.loads(summary.read_text(encoding="utf-8")).get("final_validation")
            self.log(f"{self.ckpt_path} is already complete ({saved['epoch']} epochs); nothing to do")
            return True
        self.log(
            f"resuming {self.cfg.task} from {self.ckpt_path}: epoch {saved['epoch']}, optimizer step "
            f"{saved['step_in_epoch']} of it, {saved['step']} optimizer steps done"
        )
        return False

    def init_branch(self) -> None:
        """Where the trained branch starts (``init`` for the Localizer); logged and kept in ``sources``."""
        branch, model = self.task.branch, self.runtime.model
        if self.saved is None and self.task.starts_localizer:
            if self.cfg.init == "base":
                self.sources["localizer"] = load_base_localizer(model, self.runtime.info)
            elif self.cfg.init == "answerer-copy":
                model.copy_answerer_to_localizer()
                self.sources["localizer"] = f"copy of the answerer ({self.sources.get('answerer', 'base')})"
            self.log(
                f"localizer initialised from: {self.sources.get('localizer', 'unknown')} (init {self.cfg.init})"
            )
        elif self.saved is None:
            frozen = {b: s for b, s in self.sources.items() if b != branch and b in ("answerer", "localizer")}
            self.log(f"{branch} starts from: {self.sources.get(branch)}; frozen: {frozen}")

    def setup_optimizer(self) -> None:
        """Freeze all but the trained branch, AdamW (LAVIS groups), the fp16 scaler, DDP when several processes."""
        cfg, model, branch = self.cfg, self.runtime.model, self.task.branch
        model.freeze((branch,))
        self.opt = torch.optim.AdamW(
            param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps
        )
        self.scaler = grad_scaler(self.precision, self.runtime.device)
        if self.saved is not None:
            self.opt.load_state_dict(self.saved["optimizer"])
            if self.scaler is not None and self.saved.get("scaler"):
                self.scaler.load_state_dict(self.saved["scaler"])
        module = _LossModule(self.task)
        self.net: nn.Module = module
        if self.world > 1:
            ignore = [f"model.{k}" for k in model.state_dict() if branch_of_key(k) != branch]
            with contextlib.suppress(AttributeError):
                nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                    module, ignore
                )
            self.net = self.acc.prepare(module)
        self.metrics.start(self.state["step"] if self.saved is not None else None)
        layout = self.layout
        self.log(
            f"{cfg.task}: {len(self.samples)} questions, global batch {layout.global_batch} = {layout.batch_size} "
            f"x {layout.world} processes x {layout.accum} accumulation, precision {self.precision}"
        )

    def _batch(self, entries: list[Any]) -> Batch | None:
        items: list[Item] = []
        for entry in entries:
            new_short = isinstance(entry, Item) and entry.short and entry.qid not in self.report.short
            self.report.note(entry)
            if isinstance(entry, Item):
                items.append(entry)
                if new_short and len(self.report.short) <= 3:
                    self.log(
                        f"warning: {self.report.short_examples[-1]} (kept; short_videos=skip drops such questions)"
                    )
            else:
                self.log(f"skipped question {entry.qid} ({entry.reason}): {entry.message}")
        if not items:
            if self.world > 1:
                raise InputError(
                    "every question of a batch was skipped on one process; remove the bad videos"
                )
            return None
        samples = [self.samples[it.position] for it in items]
        t = items[0].frames.frames.shape[0]
        raw = self.runtime.vit(np.concatenate([it.frames.frames for it in items]))
        raw = raw.view(len(items), t, *raw.shape[1:])
        pairs = [
            (encoded_of(s, it.frames, raw[i]), query_of(s))
            for i, (s, it) in enumerate(zip(samples, items, strict=True))
        ]
        return Batch(samples, items, raw, pairs)

    def _loader(self, epoch: int, micro: list[list[int]]) -> Any:
        cfg = self.cfg
        spec = DrawSpec(
            cfg.num_frames,
            cfg.seed,
            cfg.decoder,
            cfg.augment,
            skip_bad_videos=self.skip_bad_videos,
            skip_short_videos=cfg.short_videos == "skip",
        )
        return torch.utils.data.DataLoader(
            EpochData(self.samples, epoch, spec, self.label_map),
            batch_sampler=micro,
            collate_fn=collate,
            num_workers=self.workers,
            generator=torch.Generator().manual_seed(0),
        )

    def _micro_step(self, entries: list[Any], sync: bool) -> tuple[float, int, dict[str, float]] | None:
        batch = self._batch(entries)
        if batch is None:
            return None
        ctx = self.acc.no_sync(self.net) if self.world > 1 and not sync else contextlib.nullcontext()
        with ctx:
            with autocast(self.precision, self.runtime.device):
                loss, stats = self.net(batch)
            scaled = loss.float() * self.layout.loss_scale  # official: summed over accumulated iterations
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return float(loss.detach()), len(batch.items), stats

    def train_epoch(self, epoch: int, bar: Any) -> bool:
        """One epoch of optimizer steps (from the resumed step on); True when ``max_steps`` stopped it."""
        cfg, st = self.cfg, self.state
        plan = step_plan(len(self.samples), self.layout, cfg.seed, epoch, self.rank, cfg.drop_last)
        skip = st["step_in_epoch"]
        if skip and self.saved is not None:
            set_rng_state(self.saved["rng"]["per_rank"][self.rank])
        else:
            seed_epoch(cfg.seed, epoch, self.rank)
        micro = [m for step in plan[skip:] for m in step]
        batches = iter(self._loader(epoch, micro))
        task = bar.add_task(
            f"{cfg.task} epoch {epoch + 1}/{cfg.epochs}", total=len(plan), completed=skip, info=""
        )
        set_train_modes(self.runtime.model, self.task.branch, cfg.dropout)
        self.opt.zero_grad(set_to_none=True)
        for s in range(skip, len(plan)):
            lr = linear_warmup_cosine_lr(
                epoch, s, cfg.lr, cfg.min_lr, cfg.warmup_lr, cfg.warmup_steps, cfg.epochs
            )
            for g in self.opt.param_groups:
                g["lr"] = lr
            done = [self._micro_step(next(batches), a == len(plan[s]) - 1) for a in range(len(plan[s]))]
            self._optimizer_step()
            st["step"] += 1
            st["step_in_epoch"] = s + 1
            row = self._log_step(epoch, s, lr, [d for d in done if d is not None])
            bar.update(task, advance=1, info=f"loss {row['loss']:.4f}  lr {lr:.2e}")
            stopped = self.max_steps is not None and st["step"] >= self.max_steps
            if s < len(plan) - 1 and (stopped or (cfg.save_every and st["step"] % cfg.save_every == 0)):
                self.save_checkpoint()
            if stopped and s < len(plan) - 1:
                return True
        st["epoch"], st["step_in_epoch"] = epoch + 1, 0
        return self.max_steps is not None and st["step"] >= self.max_steps

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def _log_step(
        self, epoch: int, s: int, lr: float, done: list[tuple[float, int, dict[str, float]]]
    ) -> dict[str, Any]:
        keys = sorted(done[0][2]) if done else []
        n = sum(d[1] for d in done)
        local = [sum(d[0] for d in done) / max(len(done), 1), float(n)]
        local += [sum(d[2][k] * d[1] for d in done) / max(n, 1) for k in keys]
        means = mean_over_processes(self.acc, local)
        row = {
            "kind": "step",
            "step": self.state["step"],
            "epoch": epoch,
            "step_in_epoch": s,
            "lr": lr,
            "loss": means[0],
            "samples": int(round(means[1] * self.world)),
        }
        row.update({k: means[2 + i] for i, k in enumerate(keys)})
        self.metrics.write(row)
        return row

    def validate(self, epoch: int, bar: Any) -> dict[str, Any] | None:
        """Validation after an epoch; a new best writes ``checkpoint_best.pth``."""
        if not self.val_samples or not self.cfg.validate_every_epoch:
            return None
        metrics = self.task.validate(self.val_samples, self.acc, bar)
        best = self.state["best"]
        is_best = best is None or metrics["value"] > best["value"]
        row = {"kind": "val", "epoch": epoch, "step": self.state["step"], **metrics, "best": is_best}
        self.metrics.write(row)
        self.state["validation"].append(row)
        self.log(
            f"validation after epoch {epoch + 1}: {metrics['metric']} {metrics['value']:.2f}"
            + (" (best)" if is_best else "")
        )
        if is_best:
            self.state["best"] = {
                "epoch": epoch,
                "step": self.state["step"],
                "metric": metrics["metric"],
                "value": metrics["value"],
            }
            self._save_weights(self.best_path, best=True)
        return metrics

    def _payload(self) -> dict[str, Any]:
        st, cfg = self.state, self.cfg
        branches = [self.task.branch] if cfg.trained_only else ["answerer", "localizer"]
        return {
            "format": TOOLKIT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model": branch_state_dict(self.runtime.model, branches),
            "task": cfg.task,
            "stage": cfg.task,
            "trained_branch": self.task.branch,
            "epoch": st["epoch"],
            "step_in_epoch": st["step_in_epoch"],
            "step": st["step"],
            "complete": st["complete"],
            "best": st["best"],
            "validation": st["validation"],
            "hparams": self.hparams,
            "sources": self.sources,
        }

    def _save_weights(self, path: Path, best: bool = False) -> None:
        if self.main:
            payload = self._payload()
            if best:
                payload["complete"] = True
            atomic_torch_save(payload, path)
        self.acc.wait_for_everyone()

    def save_checkpoint(self) -> None:
        """``checkpoint.pth``: weights, optimizer, scaler, schedule position, every process's RNG, best so far."""
        rngs = gather(self.acc, rng_state())
        if self.main:
            payload = self._payload()
            payload.update(
                optimizer=self.opt.state_dict(),
                scaler=self.scaler.state_dict() if self.scaler is not None else None,
                scheduler_state={
                    "name": "linear_warmup_cosine_lr",
                    "epoch": self.state["epoch"],
                    "step_in_epoch": self.state["step_in_epoch"],
                    "lr": float(self.opt.param_groups[0]["lr"]),
                },
                rng={"per_rank": rngs},
            )
            atomic_torch_save(payload, self.ckpt_path)
        self.acc.wait_for_everyone()

    def _finish(self, bar: Any) -> None:
        """Reload the best weights (when validated) and evaluate them, as the official runner's test phase."""
        if self.state["best"] is None or not self.best_path.is_file():
            return
        best = read_training_checkpoint(self.best_path)
        sd = dict(best["model"])
        apply_state_dict(self.runtime.model, sd, sorted({branch_of_key(k) for k in sd} - {None}))  # type: ignore[arg-type]
        self.final = self.task.validate(self.val_samples, self.acc, bar)
        self.log(
            f"best checkpoint (epoch {self.state['best']['epoch'] + 1}) reloaded: "
            f"{self.final['metric']} {self.final['value']:.2f}"
        )

    def train(self) -> TrainResult:
        """setup -> resume -> init_branch -> setup_optimizer -> (train_epoch -> validate -> save_checkpoint)*
        -> reload the best and evaluate it -> ``summary.json``. Leaves the model in eval mode, all frozen."""
        self.setup()
        if self.resume():
            return self._result()
        self.init_branch()
        self.setup_optimizer()
        model, cfg = self.runtime.model, self.cfg
        try:
            with progress(self.show_progress and self.main) as bar, QuietRepeats():
                for epoch in range(self.state["epoch"], cfg.epochs):
                    stopped = self.train_epoch(epoch, bar)
                    if self.state["step_in_epoch"] == 0:  # the epoch is finished
                        self.validate(epoch, bar)
                        self.state["complete"] = epoch + 1 == cfg.epochs
                        self.save_checkpoint()
                    if stopped:
                        break
                if self.state["complete"]:
                    self._finish(bar)
        finally:
            model.eval()
            model.freeze(())
        if not self.state["complete"]:
            self.log(f"stopped after {self.state['step']} optimizer steps (max_steps); continue with resume")
        return self._result()

    def _result(self) -> TrainResult:
        parts = gather(self.acc, self.report)
        for other in parts[1:]:
            parts[0].merge(other)
        rows = self.metrics.rows("step")
        layout, st = self.layout, self.state
        prov = {
            "model": self.runtime.info.get("model"),
            "start_checkpoint": provenance(self.runtime.info.get("checkpoint")),
        }
        for name, path in (("checkpoint", self.ckpt_path), ("best_checkpoint", self.best_path)):
            exists = self.main and path.is_file()
            prov[name] = {"path": str(path.resolve()), "sha256": file_sha256(path)} if exists else None
        result = TrainResult(
            task=self.cfg.task,
            out_dir=str(self.out),
            checkpoint=str(self.ckpt_path),
            weights=str(self.best_path if st["best"] is not None else self.ckpt_path),
            complete=bool(st["complete"]),
            epochs_completed=int(st["epoch"]),
            steps=int(st["step"]),
            epoch_losses=epoch_losses(rows),
            first_loss=rows[0]["loss"] if rows else None,
            last_loss=rows[-1]["loss"] if rows else None,
            validation=list(st["validation"]),
            best=st["best"],
            final_validation=self.final,
            batch={
                "global_batch": layout.global_batch,
                "batch_size": layout.batch_size,
                "processes": layout.world,
                "accumulation": layout.accum,
                "loss_scale": layout.loss_scale,
                "precision": self.precision,
            },
            data=parts[0].to_dict(),
            sources=self.sources,
            provenance=prov,
            deviations=self.cfg.deviations(),
            warnings=list(getattr(self, "warnings", [])),
            hparams=dict(self.hparams),
        )
        if self.main:
            write_summary(self.out, result.to_dict(), self.command)
        self.acc.wait_for_everyone()
        return result


def train_stage(
    runtime: Any, samples: Sequence[Any], config: TrainConfig, out_dir: str | Path, **kw: Any
) -> TrainResult:
    """Train one task: ``Trainer(runtime, samples, config, out_dir, **kw).train()``."""
    return Trainer(runtime, samples, config, out_dir, **kw).train()


__all__ = ["Trainer", "train_stage"]
