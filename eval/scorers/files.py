"""Scoring by dataset name and from files: prediction readers, ``score_file``, the NExT-QA result file."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sevila_tools.errors import InputError

from ..datasets import Sample, get_dataset, read_json_or_jsonl
from .multiple_choice import Predictions, add_prediction_record, normalise_nextqa_key, parse_prediction


def _moment_lines(path: Path, kind: str, obj: Any) -> list[dict]:
    if kind == "jsonl":
        entries = []
        for lineno, rec in obj:
            if not isinstance(rec, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            entries.append(rec)
        return entries
    if isinstance(obj, list) and all(isinstance(r, dict) for r in obj):
        return list(obj)
    raise InputError(f"{path}: a moment-retrieval submission must be JSON Lines of objects")


def load_predictions(dataset: str, path: str | Path) -> Predictions | list[dict]:
    """Read a prediction file of ``dataset`` (plain or ``.gz``).

    Multiple choice: the toolkit's JSON Lines (``{"qid", "prediction", ...}`` per line; records with
    ``"error"`` or a null prediction count as missing), a JSON list of such records (SeViLA's result
    files, ``target`` = gold), or the NExT-QA result JSON ``{"<video>_<qid>": {"prediction": i, "answer":
    j}}``; returns :class:`Predictions`. Moments (QVHighlights): the submission lines as a list of dicts.
    """
    spec = get_dataset(dataset)
    path = Path(path)
    kind, obj = read_json_or_jsonl(path, "predictions file")
    if spec.task == "moments":
        return _moment_lines(path, kind, obj)
    preds = Predictions()
    preds.source = str(path)
    if kind == "jsonl":
        for lineno, rec in obj:
            add_prediction_record(preds, rec, f"{path}:{lineno}")
    elif isinstance(obj, list):
        for i, rec in enumerate(obj):
            add_prediction_record(preds, rec, f"{path}: record {i}")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            where = f"{path}: key {key!r}"
            if isinstance(value, Mapping):
                add_prediction_record(preds, {"qid": key, **value}, where)
            else:
                preds[str(key)] = parse_prediction(value, where)
    else:
        raise InputError(f"{path}: unsupported predictions layout ({type(obj).__name__})")
    return preds


def score_multiple_choice(
    dataset: str,
    predictions: Mapping[str, int],
    samples: Sequence[Sample],
    allow_missing: bool = False,
    *,
    split: str | None = None,
    config: dict | None = None,
) -> dict:
    """Accuracy metrics of a multiple-choice dataset by name (its spec's scorer; see ``docs/metrics.md``)."""
    spec = get_dataset(dataset)
    if spec.task != "multiple_choice":
        raise InputError(f"{spec.name} is not multiple choice; use score_qvhighlights")
    return spec.score(predictions, samples, allow_missing=allow_missing, split=split, config=config)


def score_file(
    dataset: str,
    predictions_path: str | Path,
    annotations_path: str | Path,
    *,
    allow_missing: bool = False,
    videos: str | Path | None = None,
    video_map: str | Path | Mapping[str, str] | None = None,
    split: str | None = None,
    config: dict | None = None,
) -> dict:
    """Load predictions and annotations from files and score them with the dataset's scorer.

    ``allow_missing`` scores the predicted questions only (QVHighlights: the queries shared with the
    ground truth). Multiple-choice files carrying gold answers get ``answer_mismatches`` (``{"count",
    "first"}``): disagreements with the annotations, which are the reference.
    """
    spec = get_dataset(dataset)
    samples = spec.load(annotations_path, videos=videos, video_map=video_map)
    predictions = load_predictions(spec.name, predictions_path)
    return spec.score(predictions, samples, allow_missing=allow_missing, split=split, config=config)


def write_nextqa_result_json(path: str | Path, predictions: Mapping[str, int], samples: list[Sample]) -> int:
    """Write the official NExT-QA result file ``{"<video>_<qid>": {"prediction": i, "answer": j}}``.

    Gold answers come from ``samples``; questions without a prediction are left out. Returns the number written.
    """
    known = {s.qid for s in samples}
    preds = {normalise_nextqa_key(str(k), known): v for k, v in predictions.items()}
    out = {s.qid: {"prediction": int(preds[s.qid]), "answer": s.answer} for s in samples if s.qid in preds}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out), encoding="utf-8")
    return len(out)
