"""Metrics for the SeViLA benchmarks (``shared/spec/evaluation.md`` §2–§5, §7).

* Multiple choice (NExT-QA, STAR, How2QA, TVQA, VLEP): :func:`score_multiple_choice`. NExT-QA follows
  ``doc-doc/NExT-QA`` ``eval_mc.py`` (TP merged into TN for ``Bef&Aft``, pooled C/T/D) and also
  reports SeViLA's fine types; STAR reports the unweighted mean of the four type accuracies (SeViLA's
  headline) and the pooled accuracy.
* QVHighlights moment retrieval + highlight detection: :func:`score_qvhighlights`, a single-process numpy
  re-implementation of ``jayleicn/moment_detr`` ``standalone_eval/eval.py`` that reproduces its
  output layout and values exactly (no scikit-learn, no multiprocessing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from sevila_tools.errors import InputError

from .datasets import (
    NUM_OPTIONS,
    Sample,
    check_dataset,
    load_annotations,
    qvh_ground_truth,
    read_json_or_jsonl,
)

# ----------------------------------------------------------------------------------------------------
# multiple choice

NEXTQA_TYPES = ("CW", "CH", "TN", "TP", "TC", "DC", "DL", "DO")
NEXTQA_DISPLAY = (
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
STAR_TYPES = ("Interaction", "Sequence", "Prediction", "Feasibility")
_LETTERS = "ABCDE"
_SEVILA_NEXTQA_KEY = re.compile(r"^[A-Z]{2}_(\d+_\d+)$")


class Predictions(dict):
    """``{qid: option index}`` loaded from a prediction file, plus what the file said besides.

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


def _pct(correct: int, total: int) -> float | None:
    """Percentage with 2 decimals as the official scorers print it (``'{:.2f}'.format(acc * 100.0 /
    cnt)``)."""
    if total == 0:
        return None
    return float(f"{correct * 100.0 / total:.2f}")


def _normalise_key(dataset: str, key: str, known: set[str]) -> str:
    """Map SeViLA NExT-QA ids (``CW_4010069381_6``) to the official key (``4010069381_6``)."""
    if key in known or dataset != "nextqa":
        return key
    m = _SEVILA_NEXTQA_KEY.match(key)
    return m.group(1) if m else key


def _first(items: Sequence[str], k: int = 3) -> str:
    return ", ".join(str(x) for x in items[:k])


def score_multiple_choice(
    dataset: str,
    predictions: Mapping[str, int],
    samples: list[Sample],
    allow_missing: bool = False,
    *,
    split: str | None = None,
    config: dict | None = None,
) -> dict:
    """Accuracy metrics of a multiple-choice dataset (``evaluation.md`` §7 "Multiple-choice metrics JSON").

    Args:
        dataset: ``nextqa``, ``star``, ``how2qa``, ``tvqa`` or ``vlep``.
        predictions: ``{qid: predicted option index}``; NExT-QA keys may be official (``video_qid``)
            or SeViLA's (``TYPE_video_qid``).
        samples: the annotations (gold answers from here).
        allow_missing: score only the predicted questions instead of failing when some are missing.
        split, config: recorded as given.

    Returns:
        ``{"dataset", "split", "n", "n_total", "missing", "overall", "per_type", "counts",
        ["merged", "category"] (nextqa), ["macro_type_mean", "pooled"] (star), "headline", "display",
        "config"}``; percentages with 2 decimals. ``n`` counts the scored questions, ``missing`` lists the
        unpredicted qids.

    Raises:
        InputError: unknown dataset, predictions missing (unless ``allow_missing``), out-of-range predictions,
            annotations without gold answers.
    """
    dataset = check_dataset(dataset)
    if dataset == "qvhighlights":
        raise InputError("qvhighlights is not multiple choice; use score_qvhighlights")
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
    preds: dict[str, int] = {}
    for key, value in predictions.items():
        preds[_normalise_key(dataset, str(key), known)] = value
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
    unexpected = [k for k in preds if k not in known]

    correct: dict[str, int] = {}
    counts: dict[str, int] = {}
    n_ok = n = 0
    for s in samples:
        if s.qid not in preds:
            continue
        p = preds[s.qid]
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
            raise InputError(f"prediction for {s.qid} is not an option index: {p!r}")
        if not 0 <= int(p) < len(s.options):
            raise InputError(f"prediction {p} for {s.qid} is out of range 0..{len(s.options) - 1}")
        qtype = s.qtype or dataset.upper()
        if dataset == "nextqa" and qtype not in NEXTQA_TYPES:
            raise InputError(f"unknown NExT-QA question type {qtype!r} for {s.qid}")
        hit = int(int(p) == s.answer)
        counts[qtype] = counts.get(qtype, 0) + 1
        correct[qtype] = correct.get(qtype, 0) + hit
        n += 1
        n_ok += hit

    if dataset == "nextqa":
        order = [t for t in NEXTQA_TYPES if t in counts]
    elif dataset == "star":
        order = [t for t in STAR_TYPES if t in counts] + [t for t in counts if t not in STAR_TYPES]
    else:
        order = list(counts)
    per_type = {t: _pct(correct[t], counts[t]) for t in order}
    overall = _pct(n_ok, n)
    out: dict[str, Any] = {
        "dataset": dataset,
        "split": split,
        "n": n,
        "n_total": len(samples),
        "missing": missing,
        "overall": overall,
        "per_type": per_type,
        "counts": {t: counts[t] for t in order},
    }
    if unexpected:
        out["unexpected"] = len(unexpected)
    if dataset == "nextqa":
        ba_c = correct.get("TN", 0) + correct.get("TP", 0)
        ba_n = counts.get("TN", 0) + counts.get("TP", 0)
        cat_c = {"C": 0, "T": 0, "D": 0}
        cat_n = {"C": 0, "T": 0, "D": 0}
        for t in order:
            cat_c[t[0]] += correct[t]
            cat_n[t[0]] += counts[t]
        out["merged"] = {"Bef&Aft": _pct(ba_c, ba_n)}
        out["category"] = {k: _pct(cat_c[k], cat_n[k]) for k in ("C", "T", "D")}
        groups = {**per_type, "Bef&Aft": out["merged"]["Bef&Aft"], **out["category"]}
        display = {name: groups.get(key) for key, name in NEXTQA_DISPLAY}
        display["Acc"] = overall
        out["headline"] = {"metric": "overall", "value": overall}
    elif dataset == "star":
        fractions = [correct[t] / counts[t] * 100 for t in order]
        macro = float(f"{sum(fractions) / len(fractions):.2f}")
        out["macro_type_mean"] = macro
        out["pooled"] = overall
        display = {t: per_type[t] for t in order}
        display["Avg."] = macro
        display["Acc (pooled)"] = overall
        out["headline"] = {"metric": "macro_type_mean", "value": macro}
    else:
        display = {"Acc": overall}
        out["headline"] = {"metric": "overall", "value": overall}
    out["display"] = display
    out["config"] = dict(config or {})
    return out


def _parse_prediction(value: Any, where: str) -> int:
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


def _add_record(preds: Predictions, rec: Any, where: str) -> None:
    if not isinstance(rec, Mapping):
        raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if "qid" not in rec:
        raise InputError(f"{where}: missing field 'qid'")
    qid = str(rec["qid"])
    gold = rec.get("answer", rec.get("target"))
    if gold is not None and not isinstance(gold, bool):
        try:
            preds.answers[qid] = _parse_prediction(gold, where)
        except InputError:
            pass
    if rec.get("error") or rec.get("prediction") is None:
        if qid not in preds:
            preds.errors.append(qid)
        return
    preds[qid] = _parse_prediction(rec["prediction"], where)
    if qid in preds.errors:
        preds.errors.remove(qid)


def load_predictions(dataset: str, path: str | Path) -> Predictions | list[dict]:
    """Read a prediction file.

    Multiple choice: the toolkit's JSON Lines (``{"qid", "prediction", ...}`` per line; records with
    ``"error"`` or a null prediction count as missing), a JSON list of such records (SeViLA's result
    files, ``target`` = gold), or the NExT-QA result JSON ``{"<video>_<qid>":
    {"prediction": i, "answer": j}}``. Returns :class:`Predictions` (``{qid: index}`` with ``answers`` /
    ``errors`` attributes). QVHighlights: the submission JSON Lines, returned as a list of dicts.
    """
    dataset = check_dataset(dataset)
    path = Path(path)
    kind, obj = read_json_or_jsonl(path, "predictions file")
    if dataset == "qvhighlights":
        if kind == "jsonl":
            entries = []
            for lineno, rec in obj:
                if not isinstance(rec, dict):
                    raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
                entries.append(rec)
            return entries
        if isinstance(obj, list) and all(isinstance(r, dict) for r in obj):
            return list(obj)
        raise InputError(f"{path}: a QVHighlights submission must be JSON Lines of objects")
    preds = Predictions()
    preds.source = str(path)
    if kind == "jsonl":
        for lineno, rec in obj:
            _add_record(preds, rec, f"{path}:{lineno}")
    elif isinstance(obj, list):
        for i, rec in enumerate(obj):
            _add_record(preds, rec, f"{path}: record {i}")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            where = f"{path}: key {key!r}"
            if isinstance(value, Mapping):
                _add_record(preds, {"qid": key, **value}, where)
            else:
                preds[str(key)] = _parse_prediction(value, where)
    else:
        raise InputError(f"{path}: unsupported predictions layout ({type(obj).__name__})")
    return preds


def write_nextqa_result_json(path: str | Path, predictions: Mapping[str, int], samples: list[Sample]) -> int:
    """Write the official NExT-QA result file ``{"<video>_<qid>": {"prediction": i, "answer": j}}``.

    Gold answers come from ``samples``; questions without a prediction are left out. Returns the
    number written.
    """
    known = {s.qid for s in samples}
    preds = {_normalise_key("nextqa", str(k), known): v for k, v in predictions.items()}
    out = {}
    for s in samples:
        if s.qid in preds:
            out[s.qid] = {"prediction": int(preds[s.qid]), "answer": s.answer}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out), encoding="utf-8")
    return len(out)


# ----------------------------------------------------------------------------------------------------
# QVHighlights

IOU_THDS: tuple[float, ...] = tuple(float(f"{e:.2f}") for e in np.linspace(0.5, 0.95, 10))
LENGTH_RANGES: tuple[tuple[str, tuple[float, float]], ...] = (
    ("short", (0, 10)),
    ("middle", (10, 30)),
    ("long", (30, 150)),
    ("full", (0, 150)),
)
HL_LEVELS: tuple[tuple[int, str], ...] = ((2, "Fair"), (3, "Good"), (4, "VeryGood"))
MAX_PRED_WINDOWS = 10


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _validate_qvh(submission: Any, ground_truth: Any, match_number: bool) -> tuple[list[dict], list[dict]]:
    if not isinstance(submission, list) or not submission:
        raise InputError("QVHighlights submission is empty")
    if not isinstance(ground_truth, list) or not ground_truth:
        raise InputError("QVHighlights ground truth is empty")
    for name, entries in (("submission", submission), ("ground truth", ground_truth)):
        seen = set()
        for i, e in enumerate(entries):
            if not isinstance(e, Mapping) or "qid" not in e:
                raise InputError(f"{name} entry {i} has no 'qid'")
            if e["qid"] in seen:
                raise InputError(f"duplicate qid {e['qid']!r} in the {name}")
            seen.add(e["qid"])
    pred_qids = [e["qid"] for e in submission]
    gt_qids = [e["qid"] for e in ground_truth]
    if match_number:
        gt_set, pred_set = set(gt_qids), set(pred_qids)
        if gt_set != pred_set:
            extra = [q for q in pred_qids if q not in gt_set]
            lacking = [q for q in gt_qids if q not in pred_set]
            raise InputError(
                f"qids of submission and ground truth differ: {len(lacking)} GT qids unpredicted "
                f"(first: {_first(lacking)}), {len(extra)} predicted qids not in GT "
                f"(first: {_first(extra)}); "
                "use match_number=False to score the intersection"
            )
    else:
        shared = set(pred_qids) & set(gt_qids)
        if not shared:
            raise InputError("no qid is shared by the submission and the ground truth")
        submission = [e for e in submission if e["qid"] in shared]
        ground_truth = [e for e in ground_truth if e["qid"] in shared]

    has_mr = "pred_relevant_windows" in submission[0]
    has_hl = "pred_saliency_scores" in submission[0]
    if not has_mr and not has_hl:
        raise InputError("submission has neither pred_relevant_windows nor pred_saliency_scores")
    for e in submission:
        q = e["qid"]
        if has_mr:
            wins = e.get("pred_relevant_windows")
            if not isinstance(wins, list) or not wins:
                raise InputError(f"submission qid {q}: pred_relevant_windows must hold at least one window")
            for w in wins:
                if not isinstance(w, (list, tuple)) or len(w) < 3 or not all(_is_num(x) for x in w[:3]):
                    raise InputError(
                        f"submission qid {q}: each window must be [start, end, score], got {w!r}"
                    )
                if w[0] > w[1]:
                    raise InputError(f"submission qid {q}: window {w!r} ends before it starts")
        if has_hl:
            sal = e.get("pred_saliency_scores")
            if not isinstance(sal, list) or not sal or not all(_is_num(x) for x in sal):
                raise InputError(
                    f"submission qid {q}: pred_saliency_scores must be a non-empty list of numbers"
                )
    for g in ground_truth:
        q = g["qid"]
        if has_mr:
            wins = g.get("relevant_windows")
            if not isinstance(wins, list) or not wins:
                raise InputError(f"ground truth qid {q} has no relevant_windows (unlabelled split?)")
            for w in wins:
                if not isinstance(w, (list, tuple)) or len(w) != 2 or not all(_is_num(x) for x in w):
                    raise InputError(f"ground truth qid {q}: each relevant window must be [start, end]")
        if has_hl:
            if not all(k in g for k in ("duration", "relevant_clip_ids", "saliency_scores")):
                raise InputError(
                    f"ground truth qid {q} lacks duration/relevant_clip_ids/saliency_scores "
                    "needed for highlight metrics"
                )
            ids, scores = g["relevant_clip_ids"], g["saliency_scores"]
            good = (
                _is_num(g["duration"])
                and isinstance(ids, list)
                and isinstance(scores, list)
                and len(ids) == len(scores)
                and all(isinstance(c, int) and 0 <= c < int(g["duration"] / 2) for c in ids)
                and all(isinstance(r, list) and len(r) == 3 and all(_is_num(x) for x in r) for r in scores)
            )
            if not good:
                raise InputError(f"ground truth qid {q}: relevant_clip_ids/saliency_scores are inconsistent")
    return submission, ground_truth


def _cross_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every window in ``a`` (N, 2) with every window in ``b`` (M, 2), true union (moment_detr)."""
    areas1 = a[:, 1] - a[:, 0]
    areas2 = b[:, 1] - b[:, 0]
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    right = np.minimum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = areas1[:, None] + areas2[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def _paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of ``a`` and ``b`` (N, 2) with the hull as "union" (moment_detr's paired IoU)."""
    inter = np.maximum(0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    union = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-2011 interpolated AP (ActivityNet ``interpolated_precision_recall``)."""
    mp = np.hstack([[0.0], precision, [0.0]])
    mr = np.hstack([[0.0], recall, [1.0]])
    mp = np.maximum.accumulate(mp[::-1])[::-1]
    idx = np.where(mr[1:] != mr[:-1])[0] + 1
    return np.sum((mr[idx] - mr[idx - 1]) * mp[idx])


def _query_detection_ap(preds: list, gts: list, cache: dict) -> np.ndarray:
    """Per-threshold AP of one query (ActivityNet ``compute_average_precision_detection``)."""
    n_thd = len(IOU_THDS)
    n_pred, n_gt = len(preds), len(gts)
    order = sorted(range(n_pred), key=lambda i: -preds[i][2])  # stable, like list.sort(key=-score)
    p_arr = np.array([[preds[i][0], preds[i][1]] for i in order], dtype=float)
    g_arr = np.array([[g[0], g[1]] for g in gts], dtype=float)
    iou = _cross_iou(p_arr, g_arr)
    visit = np.argsort(iou, axis=1)[:, ::-1].tolist()
    iou_l = iou.tolist()
    tp = np.zeros((n_thd, n_pred))
    for t_idx, thr in enumerate(IOU_THDS):
        locked = [False] * n_gt
        for i in range(n_pred):
            row = iou_l[i]
            for j in visit[i]:
                if row[j] < thr:
                    break
                if locked[j]:
                    continue
                locked[j] = True
                tp[t_idx, i] = 1
                break
    fp = 1.0 - tp
    tp_cum = np.cumsum(tp, axis=1).astype(float)
    fp_cum = np.cumsum(fp, axis=1).astype(float)
    recall = tp_cum / float(n_gt)
    precision = tp_cum / (tp_cum + fp_cum)
    ap = np.zeros(n_thd)
    for t_idx in range(n_thd):
        key = (n_gt, tp[t_idx].tobytes())
        val = cache.get(key)
        if val is None:
            val = _interpolated_ap(precision[t_idx], recall[t_idx])
            cache[key] = val
        ap[t_idx] = val
    return ap


def _round_pct(value: float) -> float:
    return float(f"{100 * value:.2f}")


def _compute_mr_ap(submission: list[dict], ground_truth: list[dict], cache: dict) -> dict[str, float]:
    pred_by_qid: dict[Any, list] = {}
    for d in submission:
        pred_by_qid.setdefault(d["qid"], []).extend(d["pred_relevant_windows"][:MAX_PRED_WINDOWS])
    gt_by_qid: dict[Any, list] = {}
    for d in ground_truth:
        gt_by_qid.setdefault(d["qid"], []).extend(d["relevant_windows"])
    rows = [_query_detection_ap(preds, gt_by_qid.get(qid, []), cache) for qid, preds in pred_by_qid.items()]
    ap_thds = np.array(rows).mean(0)
    out: dict[str, Any] = dict(zip([str(t) for t in IOU_THDS], ap_thds, strict=True))
    out["average"] = np.mean(ap_thds)
    return {k: _round_pct(v) for k, v in out.items()}


def _compute_mr_r1(submission: list[dict], ground_truth: list[dict]) -> dict[str, float]:
    pred_window = {d["qid"]: d["pred_relevant_windows"][0][:2] for d in submission}
    gt_window = {}
    for d in ground_truth:
        wins = d["relevant_windows"]
        best = 0
        if len(wins) > 0:
            ious = _cross_iou(np.array([pred_window[d["qid"]]], dtype=float), np.array(wins, dtype=float))[0]
            best = int(np.argmax(ious))
        gt_window[d["qid"]] = wins[best]
    qids = list(pred_window)
    pred_arr = np.array([pred_window[q] for q in qids]).astype(float)
    gt_arr = np.array([gt_window[q][:2] for q in qids]).astype(float)
    ious = _paired_iou(pred_arr, gt_arr)
    return {str(t): float(f"{np.mean(ious >= t) * 100:.2f}") for t in IOU_THDS}


def filter_by_length(
    submission: list[dict], ground_truth: list[dict], len_range: tuple[float, float]
) -> tuple[list[dict], list[dict]]:
    """Keep GT windows with ``min < ed - st <= max`` and the queries still having one (moment_detr).

    ``(0, 150)`` means no filtering ("full").
    """
    lo, hi = len_range
    if lo == 0 and hi == 150:
        return submission, ground_truth
    gt_in: list[dict] = []
    keep = set()
    for d in ground_truth:
        wins = [w for w in d["relevant_windows"] if lo < (w[1] - w[0]) <= hi]
        if wins:
            d = dict(d)
            d["relevant_windows"] = wins
            gt_in.append(d)
            keep.add(d["qid"])
    return [d for d in submission if d["qid"] in keep], gt_in


def _binary_ap_columns(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """moment_detr ``get_ap`` (sklearn precision_recall_curve + interpolation) for each column of ``labels``.

    Tied scores form one threshold; per distinct recall level r > 0 the precision is the maximum
    precision over the points with recall >= r; AP is their mean (taken in sklearn's order).
    All-0 column -> 0, all-1 column -> 1.
    """
    n = scores.shape[0]
    order = np.argsort(scores, kind="mergesort")[::-1]
    sorted_scores = scores[order]
    ends = np.r_[np.nonzero(np.diff(sorted_scores))[0], n - 1]
    tps = np.cumsum(labels[order], axis=0, dtype=np.float64)[ends]
    fps = (1 + ends)[:, None] - tps
    precision = tps / (tps + fps)
    out = np.zeros(labels.shape[1])
    for c in range(labels.shape[1]):
        total = tps[-1, c]
        if total == 0:
            out[c] = 0.0
            continue
        if total == n:
            out[c] = 1.0
            continue
        rec = tps[:, c] / total
        best = np.maximum.accumulate(precision[::-1, c])[::-1]
        first = np.r_[True, rec[1:] != rec[:-1]] & (rec > 0)
        out[c] = np.mean(best[first][::-1])
    return out


def _gt_saliency_matrix(gt: Mapping[str, Any]) -> np.ndarray:
    n_clips = int(gt["duration"] / 2)
    mat = np.zeros((n_clips, 3))
    ids = list(gt["relevant_clip_ids"])
    if ids:
        mat[np.array(ids, dtype=int)] = np.array(gt["saliency_scores"], dtype=float)
    return mat


def _eval_highlight(submission: list[dict], ground_truth: list[dict]) -> dict[str, dict[str, float]]:
    preds = {d["qid"]: d["pred_saliency_scores"] for d in submission}
    gt_mats = {d["qid"]: _gt_saliency_matrix(d) for d in ground_truth}
    n_lv = len(HL_LEVELS)
    hits = np.zeros((n_lv, len(preds), 3))
    aps = np.zeros((n_lv, len(preds), 3))
    for idx, (qid, pred) in enumerate(preds.items()):
        mat = gt_mats[qid]
        n_clips = mat.shape[0]
        pred_arr = np.array(pred, dtype=float)
        top = int(np.argmax(pred_arr))
        if len(pred_arr) >= n_clips:
            y = pred_arr[:n_clips]
        else:
            y = np.zeros(n_clips)
            y[: len(pred_arr)] = pred_arr
        labels = np.concatenate([(mat >= m).astype(float) for m, _ in HL_LEVELS], axis=1)
        if top < n_clips:
            hits[:, idx, :] = labels[top].reshape(n_lv, 3)
        if n_clips:
            aps[:, idx, :] = _binary_ap_columns(y, labels).reshape(n_lv, 3)
    out = {}
    for lv, (_, name) in enumerate(HL_LEVELS):
        out[f"HL-min-{name}"] = {
            "HL-mAP": float(f"{100 * np.mean(np.ascontiguousarray(aps[lv])):.2f}"),
            "HL-Hit1": float(f"{100 * np.mean(np.max(hits[lv], 1)):.2f}"),
        }
    return out


def score_qvhighlights(submission: list[dict], ground_truth: list[dict], match_number: bool = True) -> dict:
    """QVHighlights MR + HL metrics, exactly as ``moment_detr`` ``eval_submission`` (``evaluation.md`` §5).

    Args:
        submission: entries ``{"qid", "pred_relevant_windows": [[st, ed, score], ...],
            "pred_saliency_scores"}``.
        ground_truth: ``highlight_*_release.jsonl`` records.
        match_number: require equal qid sets (official default); ``False`` scores the intersection.

    Returns:
        ``{"brief": {...}, "HL-min-Fair": ..., "HL-min-Good": ..., "HL-min-VeryGood": ...,
        "full": ..., "long": ..., "middle": ..., "short": ...}`` in that key order (MR part only if the
        first entry has windows, HL part only if it has saliency scores); ``json.dumps(result, indent=4)``
        equals the official file.

    Raises:
        InputError: an entry without windows, malformed windows/scores, qid sets that differ, unlabelled GT.
    """
    submission, ground_truth = _validate_qvh(submission, ground_truth, match_number)
    metrics: dict[str, Any] = {}
    brief: dict[str, float] = {}
    if "pred_relevant_windows" in submission[0]:
        cache: dict = {}
        mr = {}
        for name, rng in LENGTH_RANGES:
            sub, gt = filter_by_length(submission, ground_truth, rng)
            if not gt:  # the official script yields NaN here; report null
                mr[name] = {
                    "MR-mAP": {**{str(t): None for t in IOU_THDS}, "average": None},
                    "MR-R1": {str(t): None for t in IOU_THDS},
                }
                continue
            mr[name] = {"MR-mAP": _compute_mr_ap(sub, gt, cache), "MR-R1": _compute_mr_r1(sub, gt)}
        metrics.update(mr)
        mr_brief = {
            "MR-full-mAP": mr["full"]["MR-mAP"]["average"],
            "MR-full-mAP@0.5": mr["full"]["MR-mAP"]["0.5"],
            "MR-full-mAP@0.75": mr["full"]["MR-mAP"]["0.75"],
            "MR-full-R1@0.5": mr["full"]["MR-R1"]["0.5"],
            "MR-full-R1@0.7": mr["full"]["MR-R1"]["0.7"],
        }
        for name in ("short", "middle", "long"):
            mr_brief[f"MR-{name}-mAP"] = mr[name]["MR-mAP"]["average"]
        brief.update(sorted(mr_brief.items()))
    if "pred_saliency_scores" in submission[0]:
        hl = _eval_highlight(submission, ground_truth)
        metrics.update(hl)
        for k, v in hl.items():
            for sub_k, val in v.items():
                brief[f"{k}-{sub_k.split('-')[1]}"] = val
    result: dict[str, Any] = {"brief": brief}
    result.update(sorted(metrics.items()))
    return result


# ----------------------------------------------------------------------------------------------------
# files and display


def score_file(dataset: str, predictions_path: str | Path, annotations_path: str | Path, **kw: Any) -> dict:
    """Load predictions and annotations from files and score them.

    Keyword arguments: ``allow_missing`` (multiple choice), ``match_number`` (QVHighlights), ``video_map``,
    ``split``, ``config``. For NExT-QA-style files that carry gold answers, ``answer_mismatches``
    (``{"count", "first"}``) reports disagreements with the annotation file (gold is taken from the
    annotations).
    """
    dataset = check_dataset(dataset)
    allowed = {"allow_missing", "match_number", "video_map", "split", "config"}
    unknown = set(kw) - allowed
    if unknown:
        raise TypeError(f"score_file() got unexpected keyword(s): {', '.join(sorted(unknown))}")
    if dataset == "qvhighlights":
        gt = qvh_ground_truth(load_annotations(dataset, annotations_path))
        submission = load_predictions(dataset, predictions_path)
        return score_qvhighlights(submission, gt, match_number=kw.get("match_number", True))
    samples = load_annotations(dataset, annotations_path, video_map=kw.get("video_map"))
    preds = load_predictions(dataset, predictions_path)
    assert isinstance(preds, Predictions)
    metrics = score_multiple_choice(
        dataset,
        preds,
        samples,
        allow_missing=kw.get("allow_missing", False),
        split=kw.get("split"),
        config=kw.get("config"),
    )
    if preds.errors:
        metrics["errors"] = len(preds.errors)
    if preds.answers:
        known = {s.qid for s in samples}
        file_gold = {_normalise_key(dataset, k, known): v for k, v in preds.answers.items()}
        bad = [s.qid for s in samples if s.qid in file_gold and file_gold[s.qid] != s.answer]
        metrics["answer_mismatches"] = {"count": len(bad), "first": bad[:5]}
    return metrics


def metrics_table(metrics: dict) -> Table:
    """A rich table of a metrics dict from :func:`score_multiple_choice` or :func:`score_qvhighlights`."""
    if "brief" in metrics:
        table = Table(title="QVHighlights")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in metrics["brief"].items():
            table.add_row(key, "-" if value is None else f"{value:.2f}")
        return table
    n = metrics.get("n")
    n_total = metrics.get("n_total", n)
    title = f"{metrics.get('dataset', '?')} (n={n}" + (f" of {n_total})" if n_total != n else ")")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    display = metrics.get("display") or {"Acc": metrics.get("overall")}
    for name, value in display.items():
        table.add_row(name, "-" if value is None else f"{value:.2f}")
    return table


__all__ = [
    "HL_LEVELS",
    "IOU_THDS",
    "LENGTH_RANGES",
    "NEXTQA_TYPES",
    "NUM_OPTIONS",
    "STAR_TYPES",
    "Predictions",
    "filter_by_length",
    "load_predictions",
    "metrics_table",
    "score_file",
    "score_multiple_choice",
    "score_qvhighlights",
    "write_nextqa_result_json",
]
