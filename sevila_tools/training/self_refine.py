"""Self-refinement: pre-train the Localizer, then per iteration fine-tune the Answerer, pseudo-label, refine."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sevila_tools.errors import InputError
from sevila_tools.training.accel import make_accelerator
from sevila_tools.training.checkpoints import CHECKPOINT_NAME, atomic_write_text
from sevila_tools.training.config import TrainConfig
from sevila_tools.training.frozen import build_pipeline
from sevila_tools.training.labelfile import LABELS_NAME, LABELS_SUMMARY_NAME
from sevila_tools.training.labels import pseudo_label
from sevila_tools.training.runs import RunLog, progress, write_summary
from sevila_tools.training.trainer import Trainer
from sevila_tools.training.validation import qa_validation

STAGE_KEYS = (
    "checkpoint",
    "weights",
    "complete",
    "steps",
    "epoch_losses",
    "last_loss",
    "best",
    "final_validation",
)


class SelfRefinement:
    """The paper's order. Iteration 1: pre-train the Localizer (when span annotations are given) -> fine-tune
    the Answerer with it -> pseudo-label with that Answerer -> refine the Localizer -> validate the chain.
    Iteration ``i > 1`` repeats fine-tune -> pseudo-label -> refine from the previous weights with seed
    ``seed + i - 1``. Each part lives in ``OUT/iter_i/<part>/``; ``resume`` skips finished parts."""

    def __init__(
        self,
        runtime: Any,
        samples: Sequence[Any],
        out_dir: str | Path,
        *,
        finetune: TrainConfig,
        refine: TrainConfig,
        pretrain: TrainConfig | None = None,
        pretrain_samples: Sequence[Any] | None = None,
        val_samples: Sequence[Any] | None = None,
        accelerator: Any | None = None,
        say: Callable[[str], None] | None = None,
        **trainer_kw: Any,
    ) -> None:
        self.runtime, self.samples, self.out = runtime, list(samples), Path(out_dir)
        self.configs = {
            "pretrain": pretrain,
            "finetune": finetune,
            "refine": refine.model_copy(update={"init": "checkpoint"}),
        }
        self.pretrain_samples, self.val_samples = list(pretrain_samples or []), list(val_samples or [])
        self.acc = accelerator if accelerator is not None else make_accelerator(runtime.device)
        self.kw = {**trainer_kw, "accelerator": self.acc, "say": say}
        self.log = RunLog(self.out, say, self.acc.is_main_process)

    def _train(
        self,
        name: str,
        it: int,
        samples: Sequence[Any],
        labels: Path | None = None,
        val: Sequence[Any] | None = None,
    ) -> dict[str, Any]:
        cfg = self.configs[name]
        cfg = cfg.model_copy(update={"seed": cfg.seed + it - 1})  # type: ignore[union-attr]
        stage_dir = self.out / f"iter_{it}" / name
        resume = bool(self.kw.get("resume")) and (stage_dir / CHECKPOINT_NAME).is_file()
        kw = {
            **self.kw,
            "resume": resume,
            "extra_hparams": {**dict(self.kw.get("extra_hparams") or {}), "iteration": it},
        }
        result = Trainer(self.runtime, samples, cfg, stage_dir, labels=labels, val_samples=val, **kw).train()
        return {k: v for k, v in result.to_dict().items() if k in STAGE_KEYS}

    def _labels(self, it: int) -> dict[str, Any]:
        cfg = self.configs["refine"]
        cfg = cfg.model_copy(update={"seed": cfg.seed + it - 1})  # type: ignore[union-attr]
        folder = self.out / f"iter_{it}" / "labels"
        if (folder / LABELS_SUMMARY_NAME).is_file() and self.kw.get("resume"):
            self.log(f"iteration {it}: pseudo-labels already in {folder / LABELS_NAME}")
            return json.loads((folder / LABELS_SUMMARY_NAME).read_text(encoding="utf-8"))
        return pseudo_label(
            self.runtime,
            self.samples,
            folder,
            cfg,
            accelerator=self.acc,
            progress_bar=bool(self.kw.get("progress", True)),
            resume=bool(self.kw.get("resume")),
            skip_bad_videos=bool(self.kw.get("skip_bad_videos")),
            say=self.kw.get("say"),
        )

    def iteration(self, it: int) -> dict[str, Any]:
        """One iteration's parts; the record stops early (``complete`` False) when a part stopped."""
        record: dict[str, Any] = {"iteration": it, "complete": False}
        if it == 1 and self.pretrain_samples and self.configs["pretrain"] is not None:
            record["pretrain"] = self._train("pretrain", it, self.pretrain_samples)
            if not record["pretrain"]["complete"]:
                return record
        record["finetune"] = self._train("finetune", it, self.samples, val=self.val_samples)
        if not record["finetune"]["complete"]:
            return record
        labels = self._labels(it)
        record["pseudo_labels"] = {k: labels.get(k) for k in ("file", "records", "positive_rate", "epochs")}
        label_file = (
            self.out / f"iter_{it}" / "labels" / LABELS_NAME
        )  # the summary is on the main process only
        record["refine"] = self._train("refine", it, self.samples, labels=label_file, val=self.val_samples)
        if not record["refine"]["complete"]:
            return record
        if self.val_samples:
            cfg = self.configs["finetune"]
            pipeline = build_pipeline(self.runtime, cfg.prompts, cfg.decoder)  # type: ignore[union-attr]
            with progress(bool(self.kw.get("progress", True)) and self.acc.is_main_process) as bar:
                record["validation"] = qa_validation(pipeline, self.val_samples, cfg, self.acc, bar)
            self.log(
                f"iteration {it}: validation {record['validation']['metric']} {record['validation']['value']:.2f}"
            )
        record["complete"] = True
        if self.acc.is_main_process:
            atomic_write_text(
                self.out / f"iter_{it}" / "summary.json", json.dumps(record, indent=2, default=str)
            )
        return record

    def run(self, iterations: int, command: str | None = None) -> dict[str, Any]:
        """All iterations; ``summary.json`` in ``OUT``; ``checkpoint`` = the last refined weights."""
        if iterations < 1:
            raise InputError("iterations must be >= 1")
        if not self.kw.get("resume") and (self.out / "iter_1").exists():
            raise InputError(
                f"{self.out} already holds a self-refinement run; pass --resume or use another --out"
            )
        records = []
        for it in range(1, iterations + 1):
            self.log(f"iteration {it}/{iterations}")
            records.append(self.iteration(it))
            if not records[-1]["complete"]:
                self.log(f"iteration {it} stopped before the end; rerun with --resume")
                break
        done = all(r["complete"] for r in records) and len(records) == iterations
        final = {
            "iterations": records,
            "complete": done,
            "checkpoint": records[-1]["refine"]["weights"] if done else None,
            "configs": {k: v.to_dict() for k, v in self.configs.items() if v is not None},
        }
        if self.acc.is_main_process:
            write_summary(self.out, final, command)
        self.acc.wait_for_everyone()
        return final


def self_refine(
    runtime: Any, samples: Sequence[Any], out_dir: str | Path, *, iterations: int, **kw: Any
) -> dict[str, Any]:
    """``SelfRefinement(runtime, samples, out_dir, **kw).run(iterations)``."""
    command = kw.pop("command", None)
    return SelfRefinement(runtime, samples, out_dir, **kw).run(iterations, command)
