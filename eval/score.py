"""``sevila score`` as one config and one run: official metrics of a prediction file (no model).

The run names the dataset (``--dataset`` or the older positional form), checks the files, scores, warns about what
the user should know, and keeps a long list of unpredicted ids out of the result: a count, the first few, and a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sevila_tools.errors import InputError

#: missing question ids shown inline; the full list goes to a file next to the predictions
MISSING_SHOWN = 10


class ScoreConfig(BaseModel):
    """What to score against what."""

    model_config = ConfigDict(extra="forbid")

    dataset_arg: str | None = Field(None, description="Same as --dataset (older form).",
                                    json_schema_extra={"cli": {"argument": True, "metavar": "[DATASET]"}})
    dataset: str | None = Field(None, description="Dataset name.", json_schema_extra={"cli": {"flags": [
        "--dataset", "-d"]}})
    predictions: Path | None = Field(None, description="Toolkit JSONL, NExT-QA result JSON or QVHighlights "
                                     "submission.", json_schema_extra={"cli": {"flags": ["--predictions", "-p"]}})
    annotations: Path | None = Field(None, description="Official release file or SeViLA JSON list.",
                                     json_schema_extra={"cli": {"flags": ["--annotations", "-a"]}})
    allow_missing: bool = Field(False, description="Score the predicted questions only instead of failing.",
                                json_schema_extra={"cli": {"flags": ["--allow-missing"]}})


def run_score(cfg: ScoreConfig, *, on_status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The metrics of ``cfg.predictions`` (warnings go to ``on_status``)."""
    from .scorers import load_predictions

    spec = dataset_of(cfg.dataset, cfg.dataset_arg)
    preds = existing(cfg.predictions, "--predictions", "predictions file")
    samples = spec.load(existing(cfg.annotations, "--annotations", "annotations file"))
    metrics = spec.score(load_predictions(spec.name, preds), samples, allow_missing=cfg.allow_missing)
    missing_to_file(metrics, preds)
    for line in warnings(metrics, samples, preds, cfg.annotations):
        (on_status or (lambda msg: None))(f"warning: {line}")
    return metrics


def dataset_of(option: str | None, positional: str | None) -> Any:
    """The dataset spec named by ``--dataset`` or the older positional form (not two different ones)."""
    from .datasets import available_datasets, get_dataset

    if option and positional and option.strip().lower() != positional.strip().lower():
        raise InputError(f"two datasets given: --dataset {option} and {positional}")
    if not (option or positional):
        raise InputError(f"missing --dataset NAME ({', '.join(available_datasets())})")
    return get_dataset(option or positional)  # type: ignore[arg-type]


def existing(path: Path | None, flag: str, what: str) -> Path:
    """A given, existing file (one-line errors otherwise)."""
    if path is None:
        raise InputError(f"missing {flag} FILE")
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} is a directory, expected a file: {path}")
    return path


def warnings(metrics: dict[str, Any], samples: list[Any], predictions: Path, annotations: Any) -> Iterator[str]:
    """What the user should know about the scored files."""
    from .datasets import count_empty_windows

    mismatches = metrics.get("answer_mismatches")
    if mismatches and mismatches.get("count"):
        yield (f"{mismatches['count']} gold answers in {predictions} differ from {annotations} "
               f"(first: {', '.join(mismatches['first'])}); scored against {annotations}")
    if metrics.get("errors"):
        yield f"{metrics['errors']} prediction records carry an error and count as missing"
    missing = metrics.get("missing")
    if isinstance(missing, dict):
        yield f"{missing['count']} questions without prediction were not scored (ids in {missing['file']})"
    empty = count_empty_windows(samples)
    if empty:
        yield f"{empty} questions have an empty or reversed window (end <= start); they are scored like the others"


def missing_file(predictions: Path) -> Path:
    """Where the full list of unpredicted question ids is written."""
    return predictions.with_name(predictions.name + ".missing.txt")


def missing_to_file(metrics: dict[str, Any], predictions: Path) -> None:
    """Replace a long ``missing`` list by its count, the first ids and the file holding all of them."""
    ids = metrics.get("missing")
    if not isinstance(ids, list) or not ids:
        return
    path = missing_file(predictions)
    try:
        path.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    except OSError:  # a read-only folder: a temporary file instead
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".missing.txt", delete=False) as f:
            f.write("".join(f"{i}\n" for i in ids))
        path = Path(f.name)
    metrics["missing"] = {"count": len(ids), "first": ids[:MISSING_SHOWN], "file": str(path)}


__all__ = ["ScoreConfig", "run_score"]
