"""QVHighlights moment retrieval and highlight detection, numerically identical to the official evaluation script.

Single process, numpy only; the rules are described in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sevila_tools.errors import InputError

from .frames import frame_accuracy, has_frame_decisions

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


def _first(items: Sequence[Any], k: int = 3) -> str:
    return ", ".join(str(x) for x in items[:k])


def _check_qids(submission: Any, ground_truth: Any, match_number: bool) -> tuple[list[dict], list[dict]]:
    """Non-empty, unique qids; equal qid sets (``match_number``) or the shared qids only."""
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
        return submission, ground_truth
    shared = set(pred_qids) & set(gt_qids)
    if not shared:
        raise InputError("no qid is shared by the submission and the ground truth")
    return [e for e in submission if e["qid"] in shared], [e for e in ground_truth if e["qid"] in shared]


def _check_submission_entry(e: Mapping[str, Any], has_mr: bool, has_hl: bool) -> None:
    q = e["qid"]
    if has_mr:
        wins = e.get("pred_relevant_windows")
        if not isinstance(wins, list) or not wins:
            raise InputError(f"submission qid {q}: pred_relevant_windows must hold at least one window")
        for w in wins:
            if not isinstance(w, (list, tuple)) or len(w) < 3 or not all(_is_num(x) for x in w[:3]):
                raise InputError(f"submission qid {q}: each window must be [start, end, score], got {w!r}")
            if w[0] > w[1]:
                raise InputError(f"submission qid {q}: window {w!r} ends before it starts")
    if has_hl:
        sal = e.get("pred_saliency_scores")
        if not isinstance(sal, list) or not sal or not all(_is_num(x) for x in sal):
            raise InputError(f"submission qid {q}: pred_saliency_scores must be a non-empty list of numbers")


def _check_gt_entry(g: Mapping[str, Any], has_mr: bool, has_hl: bool) -> None:
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


def _validate_qvh(submission: Any, ground_truth: Any, match_number: bool) -> tuple[list[dict], list[dict]]:
    submission, ground_truth = _check_qids(submission, ground_truth, match_number)
    has_mr = "pred_relevant_windows" in submission[0]
    has_hl = "pred_saliency_scores" in submission[0]
    if not has_mr and not has_hl:
        raise InputError("submission has neither pred_relevant_windows nor pred_saliency_scores")
    for e in submission:
        _check_submission_entry(e, has_mr, has_hl)
    for g in ground_truth:
        _check_gt_entry(g, has_mr, has_hl)
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
    """QVHighlights MR + HL metrics, exactly as the official ``eval_submission`` of Moment-DETR.

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


def score_submission(submission: list[dict], ground_truth: list[dict], match_number: bool = True) -> dict:
    """:func:`score_qvhighlights` plus ``"frame_accuracy"`` when the lines carry per-frame decisions.

    A submission holding only ``frame_sec`` / ``frame_yes`` (no windows, no saliency) gets the frame
    accuracy alone. See :func:`sevila_tools.eval.scorers.frames.frame_accuracy`.
    """
    if not isinstance(submission, list) or not submission:
        raise InputError("QVHighlights submission is empty")
    with_frames = has_frame_decisions(submission)
    official = any(k in submission[0] for k in ("pred_relevant_windows", "pred_saliency_scores"))
    result = score_qvhighlights(submission, ground_truth, match_number) if official or not with_frames else {}
    if with_frames:
        result["frame_accuracy"] = frame_accuracy(submission, ground_truth, match_number=match_number)
    return result
