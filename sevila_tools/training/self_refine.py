"""Self-refinement: pre-train the Localizer, then label, refine and fine-tune in the paper's order."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from sevila_tools.errors import InputError
from sevila_tools.files import atomic_write_text
from sevila_tools.training.accel import make_accelerator
from sevila_tools.training.checkpoints import CHECKPOINT_NAME
from sevila_tools.training.config import TrainConfig
from sevila_tools.training.labelfile import LABELS_NAME, LABELS_SUMMARY_NAME
from sevila_tools.training.labels import pseudo_label
from sevila_tools.training.runs import RunLog, write_summary
from sevila_tools.training.trainer import Trainer

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
#: the parts of every iteration after pre-training, in order. ``paper``: the paper's Table 14 text and the
#: official nexqa_sr.sh (pseudo-labels from the zero-shot Answerer, then the refined Localizer's keyframes
#: fine-tune the Answerer); ``readme``: the official README's list (fine-tune before refining).
ORDERS: dict[str, tuple[str, ...]] = {
    "paper": ("labels", "refine", "finetune"),
    "readme": ("finetune", "labels", "refine"),
}
#: the part that runs first in iteration 1 when span annotations are given
PRETRAIN = "pretrain"
Order = Literal["paper", "readme"]


class SelfRefinement:
    """Iteration 1 of ``order="paper"`` (default): pre-train the Localizer (when span annotations are given;
    validated every epoch and its best epoch kept when ``pretrain_val_samples`` are given) -> pseudo-label with
    the loaded (zero-shot) Answerer -> refine the Localizer -> fine-tune the Answerer on the refined Localizer's
    keyframes. Iteration ``i > 1`` repeats label -> refine -> fine-tune from the previous weights with seed
    ``seed + i - 1``. ``order="readme"`` fine-tunes before labelling. Each part lives in ``OUT/iter_i/<part>/``;
    ``resume`` skips finished parts."""

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
        pretrain_val_samples: Sequence[Any] | None = None,
        val_samples: Sequence[Any] | None = None,
        order: Order = "paper",
        accelerator: Any | None = None,
        say: Callable[[str], None] | None = None,
        **trainer_kw: Any,
    ) -> None:
        if order not in ORDERS:
            raise InputError(f"unknown self-refinement order {order!r}; choose one of: {', '.join(ORDERS)}")
        self.runtime, self.samples, self.out, self.order = runtime, list(samples), Path(out_dir), order
        self.configs = {PRETRAIN: pretrain, "finetune": finetune, "refine": refine}
        self.pretrain_samples = list(pretrain_samples or [])
        self.pretrain_val, self.val_samples = list(pretrain_val_samples or []), list(val_samples or [])
        self.acc = accelerator if accelerator is not None else make_accelerator(runtime.device)
        self.kw = {**trainer_kw, "accelerator": self.acc, "say": say}
        self.log = RunLog(self.out, say, self.acc.is_main_process)

    def _config(self, name: str, it: int) -> TrainConfig:
        cfg = self.configs[name]
        assert cfg is not None
        return cfg.model_copy(update={"seed": cfg.seed + it - 1})

    def _train(self, name: str, it: int) -> dict[str, Any]:
        stage_dir = self.out / f"iter_{it}" / name
        samples, val = {
            PRETRAIN: (self.pretrain_samples, self.pretrain_val),
            "refine": (self.samples, self.val_samples),
            "finetune": (self.samples, self.val_samples),
        }[name]
        labels = self.out / f"iter_{it}" / "labels" / LABELS_NAME if name == "refine" else None
        resume = bool(self.kw.get("resume")) and (stage_dir / CHECKPOINT_NAME).is_file()
        kw = {
            **self.kw,
            "resume": resume,
            "extra_hparams": {**dict(self.kw.get("extra_hparams") or {}), "iteration": it},
        }
        trainer = Trainer(self.runtime, samples, self._config(name, it), stage_dir, labels=labels, val_samples=val, **kw)
        result = trainer.train().to_dict()
        if result["complete"]:  # later stages log where the branch they start from or freeze came from
            sources = self.runtime.info.setdefault("sources", {})
            sources[trainer.task.branch] = f"iter_{it}/{name} ({Path(result['weights']).name})"
        return {k: v for k, v in result.items() if k in STAGE_KEYS}

    def _labels(self, it: int) -> dict[str, Any]:
        folder = self.out / f"iter_{it}" / "labels"
        if (folder / LABELS_SUMMARY_NAME).is_file() and self.kw.get("resume"):
            self.log(f"iteration {it}: pseudo-labels already in {folder / LABELS_NAME}")
            summary = json.loads((folder / LABELS_SUMMARY_NAME).read_text(encoding="utf-8"))
        else:
            summary = pseudo_label(
                self.runtime,
                self.samples,
                folder,
                self._config("refine", it),
                accelerator=self.acc,
                progress_bar=bool(self.kw.get("progress", True)),
                resume=bool(self.kw.get("resume")),
                skip_bad_videos=bool(self.kw.get("skip_bad_videos")),
                say=self.kw.get("say"),
            )
        summary = {k: summary.get(k) for k in ("file", "records", "positive_rate", "epochs")}
        return {**summary, "complete": True}

    def parts(self, it: int) -> list[str]:
        """The parts iteration ``it`` runs, in order (pre-training only in iteration 1, with span data)."""
        has_pretrain = it == 1 and bool(self.pretrain_samples) and self.configs[PRETRAIN] is not None
        return [PRETRAIN] * has_pretrain + list(ORDERS[self.order])

    def iteration(self, it: int) -> dict[str, Any]:
        """One iteration's parts; the record stops early (``complete`` False) when a part stopped."""
        record: dict[str, Any] = {"iteration": it, "order": list(self.parts(it)), "complete": False}
        for part in self.parts(it):
            self.log(f"iteration {it}: {part}")
            done = self._labels(it) if part == "labels" else self._train(part, it)
            record["pseudo_labels" if part == "labels" else part] = done
            if not done["complete"]:
                return record
        last = record[self.parts(it)[-1]]
        record["validation"] = last.get("final_validation")
        if record["validation"]:
            val = record["validation"]
            self.log(f"iteration {it}: validation {val['metric']} {val['value']:.2f}")
        record["complete"] = True
        if self.acc.is_main_process:
            atomic_write_text(
                self.out / f"iter_{it}" / "summary.json", json.dumps(record, indent=2, default=str)
            )
        return record

    def run(self, iterations: int, command: str | None = None) -> dict[str, Any]:
        """All iterations; ``summary.json`` in ``OUT``; ``checkpoint`` = the last part's weights."""
        if iterations < 1:
            raise InputError("iterations must be >= 1")
        if not self.kw.get("resume") and (self.out / "iter_1").exists():
            raise InputError(
                f"{self.out} already holds a self-refinement run; pass --resume or use another --out"
            )
        records = []
        for it in range(1, iterations + 1):
            self.log(f"iteration {it}/{iterations} ({self.order} order: {' -> '.join(self.parts(it))})")
            records.append(self.iteration(it))
            if not records[-1]["complete"]:
                self.log(f"iteration {it} stopped before the end; rerun with --resume")
                break
        done = all(r["complete"] for r in records) and len(records) == iterations
        final = {
            "order": self.order,
            "iterations": records,
            "complete": done,
            "checkpoint": records[-1][ORDERS[self.order][-1]]["weights"] if done else None,
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
