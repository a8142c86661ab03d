"""The run folder: ``metrics.jsonl`` (one line per optimizer step or validation), ``train.log``, the summary."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from sevila_tools.files import FILE_MODE, atomic_write_text
from sevila_tools.provenance import gpu_name, versions

log = logging.getLogger("sevila_tools.training")

METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
LOG_NAME = "train.log"


class RunLog:
    """One-line status messages: to the caller's ``say`` and, on the main process, to ``OUT/train.log``."""

    def __init__(self, out: Path | None, say: Callable[[str], None] | None = None, main: bool = True) -> None:
        self.path = out / LOG_NAME if (out is not None and main) else None
        self.say = say or log.info
        self.main = main

    def __call__(self, msg: str) -> None:
        if self.main:
            self.say(msg)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
            if new:
                self.path.chmod(FILE_MODE)


class MetricsFile:
    """``metrics.jsonl``: ``{"kind": "step", "step": <optimizer step>, ...}`` and ``{"kind": "val", ...}`` rows."""

    def __init__(self, out: Path, main: bool = True) -> None:
        self.path = out / METRICS_NAME
        self.main = main

    def rows(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All rows (or those of one kind)."""
        if not self.path.is_file():
            return []
        rows = [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]
        return [r for r in rows if kind is None or r.get("kind") == kind]

    def start(self, keep_until_step: int | None) -> None:
        """A new run empties the file; a resumed one keeps the rows up to its checkpoint's step."""
        if not self.main:
            return
        rows = [] if keep_until_step is None else [r for r in self.rows() if r["step"] <= keep_until_step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (main process only)."""
        if self.main:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


def epoch_losses(rows: list[dict[str, Any]]) -> list[float]:
    """Mean step loss of every epoch."""
    per: dict[int, list[float]] = {}
    for r in rows:
        per.setdefault(int(r["epoch"]), []).append(float(r["loss"]))
    return [sum(v) / len(v) for _, v in sorted(per.items())]


class TrainResult(BaseModel):
    """What a training run did (what ``--json`` prints; ``OUT/summary.json`` adds the command and versions)."""

    task: str = Field(description="The training task.")
    out_dir: str = Field(description="The run folder.")
    checkpoint: str = Field(description="checkpoint.pth: last weights and the state to resume from.")
    weights: str = Field(description="The weights to use next: the best epoch's when validated, else the last.")
    complete: bool = Field(description="Every epoch ran.")
    epochs_completed: int = Field(description="Finished epochs.")
    steps: int = Field(description="Optimizer steps taken.")
    epoch_losses: list[float] = Field(default_factory=list, description="Mean step loss of every epoch.")
    first_loss: float | None = Field(None, description="Loss of the first optimizer step.")
    last_loss: float | None = Field(None, description="Loss of the last optimizer step.")
    validation: list[dict[str, Any]] = Field(default_factory=list, description="One row per validated epoch.")
    best: dict[str, Any] | None = Field(None, description="The best validated epoch and its metric.")
    final_validation: dict[str, Any] | None = Field(None, description="The best weights, evaluated again.")
    batch: dict[str, Any] = Field(default_factory=dict, description="Batch layout and precision.")
    data: dict[str, Any] = Field(default_factory=dict, description="Questions used, dropped and skipped.")
    sources: dict[str, str] = Field(default_factory=dict, description="Where each model part came from.")
    provenance: dict[str, Any] = Field(default_factory=dict, description="Model, checkpoints and their hashes.")
    deviations: list[dict[str, Any]] = Field(default_factory=list, description="Settings off the official run.")
    warnings: list[str] = Field(default_factory=list, description="Warnings about the run's settings.")
    hparams: dict[str, Any] = Field(default_factory=dict, description="Every setting of the run.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return self.model_dump(mode="json")

    def overview(self) -> dict[str, Any]:
        """The result as labelled values (what the training commands print)."""
        best = self.best and f"epoch {self.best['epoch'] + 1}: {self.best['metric']} {self.best['value']:.2f}"
        return {**self.model_dump(include={"checkpoint", "weights", "complete", "epochs_completed", "steps",
                                           "first_loss", "last_loss"}),
                "epoch losses": ", ".join(f"{x:.4f}" for x in self.epoch_losses), "best": best,
                "deviations": ", ".join(d["option"] for d in self.deviations) or "none"}


def write_summary(out: Path, result: dict[str, Any], command: str | None = None) -> Path:
    """``OUT/summary.json``: the result plus the command, the versions and the GPU."""
    data = {"command": command, **result, "versions": versions(), "gpu": gpu_name()}
    return atomic_write_text(out / SUMMARY_NAME, json.dumps(data, indent=2, default=str))


def progress(enabled: bool, info: bool = True) -> Any:
    """The run's progress display (a rich bar on a terminal, plain periodic lines otherwise)."""
    from sevila_tools.progress import make_run_progress

    return make_run_progress(enabled, unit="it", info=info)


class QuietRepeats(logging.Filter):
    """Let each distinct runtime warning through once (truncation warnings would repeat every epoch)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True

    def __enter__(self) -> QuietRepeats:
        logging.getLogger("sevila_tools.runtime").addFilter(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        logging.getLogger("sevila_tools.runtime").removeFilter(self)
