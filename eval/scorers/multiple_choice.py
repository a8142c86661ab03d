"""Multiple-choice accuracy: per question type, NExT-QA's merged and C/T/D groups, STAR's type mean."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sevila_tools.errors import InputError

NEXTQA_TYPES: tuple[str, ...] = ("CW", "CH", "TN", "TP", "TC", "DC", "DL", "DO")
NEXTQA_DISPLAY: tuple[tuple[str, str], ...] = (
    ("CW", "Why"),
    ("CH", "How"),
    ("Bef&Aft", "Bef&Aft"),
    ("TC", "When"),
    ("DC", "Cnt"),
    ("DL", "Loc"),
    ("DO", "Other"),
    ("C", "Acc_C"),
    ("T", "Acc_T"),
    ("D", "Acc_D"),
)
NEXTQA_COLUMNS: tuple[str, ...] = (*(name for _, name in NEXTQA_DISPLAY), "Acc")
STAR_TYPES: tuple[str, ...] = ("Interaction", "Sequence", "Prediction", "Feasibility")
STAR_COLUMNS: tuple[str, ...] = (*STAR_TYPES, "Avg.", "Acc (pooled)")
ACCURACY_COLUMNS: tuple[str, ...] = ("Acc",)
UNIT = "percent"
_LETTERS = "ABCDE"
_SEVILA_NEXTQA_KEY = re.compile(r"^[A-Z]{2}_(\d+_\d+)$")


class ChoiceSample(Protocol):
    """What the scorer reads from an annotated question (``eval.datasets.Sample`` has these fields)."""

    qid: str
    options: list[str]
    answer: int | None
    qtype: str | None


class Predictions(dict):
    """``{qid: option index}`` read from a prediction file, plus what the file said besides.

    Attributes:
        answers: gold answers found in the file (``answer`` / ``target`` fields), for cross-checking.
        errors: qids whose record carried an ``error`` (or a null prediction); they count as missing.
        source: the file it came from.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers: dict[str, int] = {}
        self.errors: list[str] = []
        self.source: str | None = None


@dataclass
class Tally:
    """Correct answers and question counts per question type (in first-seen order)."""

    correct: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    @property
    def n_correct(self) -> int:
        return sum(self.correct.values())

    def add(self, qtype: str, hit: bool) -> None:
        self.counts[qtype] = self.counts.get(qtype, 0) + 1
        self.correct[qtype] = self.correct.get(qtype, 0) + int(hit)


Breakdown = Callable[[Tally, list[str]], dict[str, Any]]
"""``breakdown(tally, type_order) -> {extra fields..., "display": {...}, "headline": {"metric", "value"}}``."""


def pct(correct: int, total: int) -> float | None:
    """Percentage with 2 decimals as the official scripts print it (``'{:.2f}'`` of ``correct * 100 / total``)."""
    if total == 0:
        return None
    return float(f"{correct * 100.0 / total:.2f}")


def _first(items: Sequence[str], k: int = 3) -> str:
    return ", ".join(str(x) for x in items[:k])


def normalise_nextqa_key(key: str, known: set[str]) -> str:
    """Map SeViLA NExT-QA ids (``CW_4010069381_6``) to the official key (``4010069381_6``)."""
    if key in known:
        return key
    m = _SEVILA_NEXTQA_KEY.match(key)
    return m.group(1) if m else key


# ---------------------------------------------------------------------------------------------- breakdowns


def accuracy_breakdown(tally: Tally, order: list[str]) -> dict[str, Any]:
    """Overall accuracy only (How2QA, TVQA, VLEP)."""
    overall = pct(tally.n_correct, tally.n)
    return {"headline": {"metric": "overall", "value": overall}, "display": {"Acc": overall}}


def nextqa_breakdown(tally: Tally, order: list[str]) -> dict[str, Any]:
    """NExT-QA: TP merged into TN as ``Bef&Aft``; C/T/D pooled over their questions; overall ``Acc``."""
    c, n = tally.correct, tally.counts
    per_type = {t: pct(c[t], n[t]) for t in order}
    merged = {"Bef&Aft": pct(c.get("TN", 0) + c.get("TP", 0), n.get("TN", 0) + n.get("TP", 0))}
    category = {}
    for cat in "CTD":
        group = [t for t in order if t[0] == cat]
        category[cat] = pct(sum(c[t] for t in group), sum(n[t] for t in group))
    overall = pct(tally.n_correct, tally.n)
    groups = {**per_type, **merged, **category}
    display = {name: groups.get(key) for key, name in NEXTQA_DISPLAY}
    display["Acc"] = overall
    return {
        "merged": merged,
        "category": category,
        "headline": {"metric": "overall", "value": overall},
        "display": display,
    }


def star_breakdown(tally: Tally, order: list[str]) -> dict[str, Any]:
    """STAR: per-type accuracy; headline = unweighted mean of the four types when all four are present.

    Without all four types the headline falls back to the pooled accuracy (the official rule).
    """
    overall = pct(tally.n_correct, tally.n)
    macro = None
    if all(t in tally.counts for t in STAR_TYPES):
        fractions = [tally.correct[t] / tally.counts[t] * 100 for t in STAR_TYPES]
        macro = float(f"{sum(fractions) / len(fractions):.2f}")
    display: dict[str, float | None] = {t: pct(tally.correct[t], tally.counts[t]) for t in order}
    display["Avg."] = macro
    display["Acc (pooled)"] = overall
    headline = (
        {"metric": "macro_type_mean", "value": macro}
        if macro is not None
        else {
            "metric": "overall",
            "value": overall,
        }
    )
    return {"macro_type_mean": macro, "pooled": overall, "headline": headline, "display": display}


# ---------------------------------------------------------------------------------------------- scoring


def _check_samples(dataset: str, samples: Sequence[ChoiceSample]) -> set[str]:
    if not samples:
        raise InputError(f"no {dataset} annotations to score")
    known: set[str] = set()
    for s in samples:
        if s.qid in known:
            raise InputError(f"duplicate question id {s.qid!r} in the {dataset} annotations")
        known.add(s.qid)
    no_gold = [s.qid for s in samples if s.answer is None]
    if no_gold:
        raise InputError(
            f"{len(no_gold)} of {len(samples)} questions have no gold answer (first: {_first(no_gold)}); "
            "cannot score (test split?)"
        )
    return known


def _match(
    dataset: str,
    predictions: Mapping[str, Any],
    samples: Sequence[ChoiceSample],
    known: set[str],
    normalise: Callable[[str, set[str]], str] | None,
    allow_missing: bool,
) -> tuple[dict[str, Any], list[str]]:
    preds = {(normalise(str(k), known) if normalise else str(k)): v for k, v in predictions.items()}
    missing = [s.qid for s in samples if s.qid not in preds]
    if missing and not allow_missing:
        raise InputError(
            f"{len(missing)} of {len(samples)} questions have no prediction (first: {_first(missing)}); "
            "use --allow-missing to score the rest"
        )
    if len(missing) == len(samples):
        raise InputError(
            f"none of the {len(samples)} {dataset} questions has a prediction (ids do not match?)"
        )
    return preds, missing


def _tally(
    dataset: str, preds: Mapping[str, Any], samples: Sequence[ChoiceSample], known_types: Iterable[str] | None
) -> Tally:
    allowed = set(known_types) if known_types is not None else None
    tally = Tally()
    for s in samples:
        if s.qid not in preds:
            continue
        p = preds[s.qid]
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
            raise InputError(f"prediction for {s.qid} is not an option index: {p!r}")
        if not 0 <= int(p) < len(s.options):
            raise InputError(f"prediction {p} for {s.qid} is out of range 0..{len(s.options) - 1}")
        qtype = s.qtype or dataset.upper()
        if allowed is not None and qtype not in allowed:
            raise InputError(f"unknown {dataset} question type {qtype!r} for {s.qid}")
        tally.add(qtype, int(p) == s.answer)
    return tally


def _file_checks(
    predictions: Mapping[str, Any], samples: Sequence[ChoiceSample], known: set[str], normalise: Any
) -> dict[str, Any]:
    """Error records and gold answers that disagree with the annotations (files read by ``load_predictions``)."""
    out: dict[str, Any] = {}
    if isinstance(predictions, Predictions):
        if predictions.errors:
            out["errors"] = len(predictions.errors)
        if predictions.answers:
            gold = {(normalise(k, known) if normalise else k): v for k, v in predictions.answers.items()}
            bad = [s.qid for s in samples if s.qid in gold and gold[s.qid] != s.answer]
            out["answer_mismatches"] = {"count": len(bad), "first": bad[:5]}
    return out


def score_choices(
    predictions: Mapping[str, Any],
    samples: Sequence[ChoiceSample],
    *,
    dataset: str,
    breakdown: Breakdown = accuracy_breakdown,
    type_order: Sequence[str] = (),
    known_types: Iterable[str] | None = None,
    normalise: Callable[[str, set[str]], str] | None = None,
    allow_missing: bool = False,
    split: str | None = None,
    config: dict | None = None,
) -> dict:
    """Accuracy of ``predictions`` (``{qid: option index}``) on ``samples``, broken down by ``breakdown``.

    Returns ``{"dataset", "split", "n", "n_total", "missing", "overall", "per_type", "counts", [...breakdown
    fields], "headline", "display", "unit", "config"}`` (+ ``unexpected``, ``errors``, ``answer_mismatches``
    when they apply). Accuracies are percentages with 2 decimals.

    Raises:
        InputError: duplicate qids, questions without gold answer or (unless ``allow_missing``) without
            prediction, predictions that are not an option index.
    """
    known = _check_samples(dataset, samples)
    preds, missing = _match(dataset, predictions, samples, known, normalise, allow_missing)
    tally = _tally(dataset, preds, samples, known_types)
    order = [t for t in type_order if t in tally.counts] + [t for t in tally.counts if t not in type_order]
    out: dict[str, Any] = {
        "dataset": dataset,
        "split": split,
        "n": tally.n,
        "n_total": len(samples),
        "missing": missing,
        "overall": pct(tally.n_correct, tally.n),
        "per_type": {t: pct(tally.correct[t], tally.counts[t]) for t in order},
        "counts": {t: tally.counts[t] for t in order},
    }
    unexpected = [k for k in preds if k not in known]
    if unexpected:
        out["unexpected"] = len(unexpected)
    out.update(breakdown(tally, order))
    out["unit"] = UNIT
    out["config"] = dict(config or {})
    out.update(_file_checks(predictions, samples, known, normalise))
    return out


def score_nextqa(predictions: Mapping[str, Any], samples: Sequence[ChoiceSample], **kw: Any) -> dict:
    """NExT-QA metrics (keys may be official ``video_qid`` or SeViLA's ``TYPE_video_qid``); see :func:`score_choices`."""
    kw.setdefault("dataset", "nextqa")
    return score_choices(
        predictions,
        samples,
        breakdown=nextqa_breakdown,
        type_order=NEXTQA_TYPES,
        known_types=NEXTQA_TYPES,
        normalise=normalise_nextqa_key,
        **kw,
    )


def score_star(predictions: Mapping[str, Any], samples: Sequence[ChoiceSample], **kw: Any) -> dict:
    """STAR metrics: per type, the four-type mean (headline) and the pooled accuracy; see :func:`score_choices`."""
    kw.setdefault("dataset", "star")
    return score_choices(predictions, samples, breakdown=star_breakdown, type_order=STAR_TYPES, **kw)


def score_accuracy(predictions: Mapping[str, Any], samples: Sequence[ChoiceSample], **kw: Any) -> dict:
    """Overall accuracy (How2QA, TVQA, VLEP); ``dataset`` is required; see :func:`score_choices`."""
    return score_choices(predictions, samples, breakdown=accuracy_breakdown, **kw)


# ---------------------------------------------------------------------------------------------- prediction records


def parse_prediction(value: Any, where: str) -> int:
    """An option index from an int, a numeric string, a letter ``"C"`` or ``"Option C"``."""
    if isinstance(value, bool):
        raise InputError(f"{where}: prediction must be an option index, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        v = value.strip()
        if re.fullmatch(r"-?\d+", v):
            return int(v)
        m = re.fullmatch(r"(?:Option\s+)?([A-E])", v)
        if m:
            return _LETTERS.index(m.group(1))
    raise InputError(f"{where}: prediction must be an option index, got {value!r}")


def add_prediction_record(preds: Predictions, rec: Any, where: str) -> None:
    """Add one ``{"qid", "prediction", ["answer"|"target"], ["error"]}`` record to ``preds``."""
    if not isinstance(rec, Mapping):
        raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if "qid" not in rec:
        raise InputError(f"{where}: missing field 'qid'")
    qid = str(rec["qid"])
    gold = rec.get("answer", rec.get("target"))
    if gold is not None and not isinstance(gold, bool):
        try:
            preds.answers[qid] = parse_prediction(gold, where)
        except InputError:
            pass
    if rec.get("error") or rec.get("prediction") is None:
        if qid not in preds:
            preds.errors.append(qid)
        return
    preds[qid] = parse_prediction(rec["prediction"], where)
    if qid in preds.errors:
        preds.errors.remove(qid)
