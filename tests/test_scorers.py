"""Scorers: QVHighlights exact reproduction of the official metrics file, NExT-QA/STAR/other accuracy, frame accuracy."""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sevila_tools.errors import InputError
from sevila_tools.eval.datasets import Sample, get_dataset, load_annotations, qvh_ground_truth
from sevila_tools.eval.scorers import (
    STAR_TYPES,
    filter_by_length,
    frame_accuracy,
    frame_labels,
    load_predictions,
    metrics_table,
    score_file,
    score_multiple_choice,
    score_qvhighlights,
    score_submission,
    write_nextqa_result_json,
)

# ---------------------------------------------------------------------------------------------------- QVHighlights


@pytest.fixture(scope="module")
def qvh(real_data: Path) -> tuple[list[dict], list[dict], str]:
    d = real_data / "qvhighlights"
    sub = load_predictions("qvhighlights", d / "sample_val_preds.jsonl")
    gt = qvh_ground_truth(load_annotations("qvhighlights", d / "highlight_val_release.jsonl"))
    return sub, gt, (d / "sample_val_preds_metrics_raw.json").read_text()


def test_qvh_reproduces_official_metrics_file(qvh: tuple[list[dict], list[dict], str]) -> None:
    sub, gt, ref_text = qvh
    t0 = time.perf_counter()
    metrics = score_qvhighlights(sub, gt)
    elapsed = time.perf_counter() - t0
    assert metrics == json.loads(ref_text)
    assert json.dumps(metrics, indent=4) == ref_text
    assert list(metrics) == [
        "brief",
        "HL-min-Fair",
        "HL-min-Good",
        "HL-min-VeryGood",
        "full",
        "long",
        "middle",
        "short",
    ]
    assert elapsed < 10, f"QVHighlights scoring took {elapsed:.1f} s"
    assert metrics_table(metrics).row_count == 14  # the brief


def test_qvh_length_buckets_on_val(qvh: tuple[list[dict], list[dict], str]) -> None:
    sub, gt, _ = qvh
    counts = {}
    for name, rng in (("short", (0, 10)), ("middle", (10, 30)), ("long", (30, 150))):
        s, g = filter_by_length(sub, gt, rng)
        assert [d["qid"] for d in s] == [d["qid"] for d in sub if d["qid"] in {x["qid"] for x in g}]
        counts[name] = len(g)
    assert counts == {"short": 429, "middle": 957, "long": 574}
    assert filter_by_length(sub, gt, (0, 150)) == (sub, gt)


def test_qvh_multi_window_buckets_by_hand() -> None:
    """Query 1 has a short, a middle and a long GT window; query 2 one short window (values worked out by hand)."""
    gt = [
        {"qid": 1, "duration": 150, "relevant_windows": [[0, 8], [20, 40], [60, 110]]},
        {"qid": 2, "duration": 150, "relevant_windows": [[10, 14]]},
    ]
    sub = [
        {"qid": 1, "pred_relevant_windows": [[20, 40, 0.9], [0, 8, 0.8], [70, 80, 0.7]]},
        {"qid": 2, "pred_relevant_windows": [[10, 14, 0.5]]},
    ]
    m = score_qvhighlights(sub, gt)
    assert list(m) == ["brief", "full", "long", "middle", "short"]
    # full: q1 TP, TP, FP over 3 GTs -> AP 2/3; q2 AP 1
    assert set(m["full"]["MR-mAP"].values()) == {83.33}
    assert set(m["full"]["MR-R1"].values()) == {100.0}
    # short: q1 keeps [0, 8] only -> FP, TP, FP -> AP 1/2; q2 AP 1; R1: q1's first window misses [0, 8]
    assert m["short"]["MR-mAP"]["average"] == 75.0 and m["short"]["MR-R1"]["0.5"] == 50.0
    assert m["middle"]["MR-mAP"]["average"] == 100.0 and m["middle"]["MR-R1"]["0.95"] == 100.0
    assert m["long"]["MR-mAP"]["average"] == 0.0 and m["long"]["MR-R1"]["0.5"] == 0.0
    assert list(m["brief"]) == [
        "MR-full-R1@0.5",
        "MR-full-R1@0.7",
        "MR-full-mAP",
        "MR-full-mAP@0.5",
        "MR-full-mAP@0.75",
        "MR-long-mAP",
        "MR-middle-mAP",
        "MR-short-mAP",
    ]


def test_qvh_mr_uses_listed_order_and_first_ten() -> None:
    gt = [{"qid": 1, "duration": 150, "relevant_windows": [[0, 10]]}]
    # R1 takes the first *listed* window even when a later one scores higher
    sub = [{"qid": 1, "pred_relevant_windows": [[50, 60, 0.1], [0, 10, 0.9]]}]
    m = score_qvhighlights(sub, gt)
    assert m["full"]["MR-R1"]["0.5"] == 0.0 and m["full"]["MR-mAP"]["0.5"] == 100.0
    # only the first 10 listed windows enter mAP
    sub = [{"qid": 1, "pred_relevant_windows": [[50, 60, 0.9]] * 10 + [[0, 10, 1.0]]}]
    assert score_qvhighlights(sub, gt)["full"]["MR-mAP"]["average"] == 0.0


def test_qvh_highlight_ties_padding_and_hit1() -> None:
    gt = [
        {
            "qid": 7,
            "duration": 8,
            "relevant_windows": [[2, 6]],
            "relevant_clip_ids": [1, 2],
            "saliency_scores": [[4, 2, 0], [2, 4, 0]],
        }
    ]
    sub = [{"qid": 7, "pred_saliency_scores": [0.1, 0.9, 0.5, 0.5]}]
    m = score_qvhighlights(sub, gt)
    assert list(m) == ["brief", "HL-min-Fair", "HL-min-Good", "HL-min-VeryGood"]
    # VeryGood: annotator APs 1, 1/3 (the tied 0.5 clips form one threshold), 0 (no positive)
    assert m["HL-min-VeryGood"] == {"HL-mAP": 44.44, "HL-Hit1": 100.0}
    assert m["HL-min-Good"] == {"HL-mAP": 44.44, "HL-Hit1": 100.0}
    assert m["HL-min-Fair"] == {"HL-mAP": 55.56, "HL-Hit1": 100.0}
    # argmax beyond the GT clips -> miss; the prediction is truncated to the 4 clips for AP
    sub = [{"qid": 7, "pred_saliency_scores": [0.1, 0.9, 0.5, 0.5, 0.0, 2.0]}]
    m = score_qvhighlights(sub, gt)
    assert m["HL-min-Fair"] == {"HL-mAP": 55.56, "HL-Hit1": 0.0}
    # short predictions are zero-padded: [0.9] -> [0.9, 0, 0, 0]
    sub = [{"qid": 7, "pred_saliency_scores": [0.9]}]
    assert score_qvhighlights(sub, gt)["HL-min-Fair"]["HL-Hit1"] == 0.0


def test_qvh_validation() -> None:
    gt = [
        {"qid": 1, "duration": 150, "relevant_windows": [[0, 10]]},
        {"qid": 2, "duration": 150, "relevant_windows": [[0, 10]]},
    ]
    ok = {"qid": 1, "pred_relevant_windows": [[0, 10, 1.0]]}
    with pytest.raises(InputError, match="at least one window"):
        score_qvhighlights([ok, {"qid": 2, "pred_relevant_windows": []}], gt)
    with pytest.raises(InputError, match="differ"):
        score_qvhighlights([ok], gt)
    with pytest.raises(InputError, match=r"\[start, end, score\]"):
        score_qvhighlights([ok, {"qid": 2, "pred_relevant_windows": [[0, 10]]}], gt)
    with pytest.raises(InputError, match="duplicate"):
        score_qvhighlights([ok, ok], gt)
    m = score_qvhighlights([ok], gt, match_number=False)
    assert m["full"]["MR-mAP"]["average"] == 100.0
    with pytest.raises(InputError, match="saliency"):
        score_qvhighlights([{"qid": 1, "pred_saliency_scores": [1.0]}], gt[:1])


# ---------------------------------------------------------------------------------------------------- NExT-QA


@pytest.fixture(scope="module")
def nextqa(real_data: Path) -> list[Sample]:
    return load_annotations("nextqa", real_data / "nextqa" / "val.csv")


def _independent_type_accuracy(csv_path: Path, predict) -> dict[str, float]:
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    hit: Counter = Counter()
    tot: Counter = Counter()
    for r in rows:
        tot[r["type"]] += 1
        hit[r["type"]] += int(predict(r) == int(r["answer"]))
    return {t: float(f"{100.0 * hit[t] / tot[t]:.2f}") for t in tot}


def test_nextqa_synthetic_predictions(nextqa: list[Sample], real_data: Path) -> None:
    right = score_multiple_choice("nextqa", {s.qid: s.answer for s in nextqa}, nextqa)
    assert right["overall"] == 100.0 and set(right["per_type"].values()) == {100.0}
    wrong = score_multiple_choice("nextqa", {s.qid: (s.answer + 1) % 5 for s in nextqa}, nextqa)
    assert wrong["overall"] == 0.0 and set(wrong["display"].values()) == {0.0}

    zero = score_multiple_choice("nextqa", {s.qid: 0 for s in nextqa}, nextqa)
    assert zero["overall"] == 20.28 and zero["n"] == 4996 and zero["missing"] == []
    assert zero["per_type"] == _independent_type_accuracy(real_data / "nextqa" / "val.csv", lambda r: 0)
    assert list(zero["per_type"]) == ["CW", "CH", "TN", "TP", "TC", "DC", "DL", "DO"]
    assert zero["counts"]["TP"] == 54
    assert list(zero["display"]) == [
        "Why",
        "How",
        "Bef&Aft",
        "When",
        "Cnt",
        "Loc",
        "Other",
        "Acc_C",
        "Acc_T",
        "Acc_D",
        "Acc",
    ]
    # Bef&Aft merges TN and TP; C/T/D are pooled over questions
    tn_tp = [s for s in nextqa if s.qtype in ("TN", "TP")]
    assert zero["merged"]["Bef&Aft"] == float(f"{100.0 * sum(s.answer == 0 for s in tn_tp) / len(tn_tp):.2f}")
    for cat in "CTD":
        group = [s for s in nextqa if s.qtype[0] == cat]
        assert zero["category"][cat] == float(f"{100.0 * sum(s.answer == 0 for s in group) / len(group):.2f}")
    assert zero["display"]["Acc"] == 20.28 and zero["display"]["Bef&Aft"] == zero["merged"]["Bef&Aft"]

    # SeViLA-style keys (TYPE_video_qid) are accepted
    sevila_keys = {s.extra["sevila_qid"]: s.answer for s in nextqa}
    assert score_multiple_choice("nextqa", sevila_keys, nextqa)["overall"] == 100.0
    table = metrics_table(zero)
    assert table.row_count == 11 and len(table.columns) == 2


def test_nextqa_missing_predictions(nextqa: list[Sample]) -> None:
    preds = {s.qid: 0 for s in nextqa[10:]}
    with pytest.raises(InputError) as exc:
        score_multiple_choice("nextqa", preds, nextqa)
    msg = str(exc.value)
    assert (
        msg.startswith("10 of 4996 questions have no prediction") and nextqa[0].qid in msg and "\n" not in msg
    )
    part = score_multiple_choice("nextqa", preds, nextqa, allow_missing=True)
    assert part["n"] == 4986 and part["n_total"] == 4996 and part["missing"] == [s.qid for s in nextqa[:10]]
    with pytest.raises(InputError, match="out of range"):
        score_multiple_choice("nextqa", {s.qid: 5 for s in nextqa}, nextqa)


def test_nextqa_result_json_round_trip(nextqa: list[Sample], real_data: Path, tmp_path: Path) -> None:
    preds = {s.qid: (s.answer if i % 3 else 0) for i, s in enumerate(nextqa)}
    path = tmp_path / "result.json"
    assert write_nextqa_result_json(path, preds, nextqa) == 4996
    data = json.loads(path.read_text())
    assert data[nextqa[0].qid] == {"prediction": preds[nextqa[0].qid], "answer": nextqa[0].answer}
    loaded = load_predictions("nextqa", path)
    assert dict(loaded) == preds
    assert loaded.answers == {s.qid: s.answer for s in nextqa}
    metrics = score_file("nextqa", path, real_data / "nextqa" / "val.csv")
    assert metrics["overall"] == score_multiple_choice("nextqa", preds, nextqa)["overall"]
    assert metrics["answer_mismatches"] == {"count": 0, "first": []}
    data[nextqa[5].qid]["answer"] = (nextqa[5].answer + 1) % 5
    path.write_text(json.dumps(data))
    metrics = score_file("nextqa", path, real_data / "nextqa" / "val.csv")
    assert metrics["answer_mismatches"] == {"count": 1, "first": [nextqa[5].qid]}


# ---------------------------------------------------------------------------------------------------- other datasets


def _sample(dataset: str, qid: str, answer: int, n_opt: int = 4) -> Sample:
    return Sample(
        dataset=dataset,
        qid=qid,
        video_id="v",
        video="v",
        question="q?",
        options=[f"o{i}" for i in range(n_opt)],
        answer=answer,
        qtype=qid.split("_")[0],
    )


def test_star_macro_vs_pooled(tmp_path: Path) -> None:
    spec = [("Interaction", 4, 3), ("Sequence", 2, 1), ("Prediction", 1, 1), ("Feasibility", 3, 0)]
    samples, preds = [], {}
    for qtype, n, n_right in spec:
        for i in range(n):
            qid = f"{qtype}_T1_{i}"
            samples.append(_sample("star", qid, answer=1))
            preds[qid] = 1 if i < n_right else 2
    m = score_multiple_choice("star", preds, samples)
    assert m["per_type"] == {"Interaction": 75.0, "Sequence": 50.0, "Prediction": 100.0, "Feasibility": 0.0}
    assert m["overall"] == 50.0 and m["pooled"] == 50.0
    assert m["macro_type_mean"] == 56.25 and m["headline"] == {"metric": "macro_type_mean", "value": 56.25}
    assert m["display"]["Avg."] == 56.25

    # the same through files: SeViLA JSON annotations + toolkit JSONL predictions (with an error record)
    ann = [
        {
            "video": "x",
            "num_option": 4,
            "qid": s.qid,
            "a0": "a",
            "a1": "b",
            "a2": "c",
            "a3": "d",
            "answer": 1,
            "question": "q?",
        }
        for s in samples
    ]
    (tmp_path / "star.json").write_text(json.dumps(ann))
    lines = [json.dumps({"qid": k, "prediction": v, "answer": 1}) for k, v in preds.items()]
    lines.append(json.dumps({"qid": "Interaction_T1_9", "error": "video missing"}))
    (tmp_path / "pred.jsonl").write_text("\n".join(lines))
    (tmp_path / "star.json").write_text(json.dumps(ann + [{**ann[0], "qid": "Interaction_T1_9"}]))
    with pytest.raises(InputError, match="1 of 11 questions have no prediction"):
        score_file("star", tmp_path / "pred.jsonl", tmp_path / "star.json")
    m2 = score_file("star", tmp_path / "pred.jsonl", tmp_path / "star.json", allow_missing=True)
    assert m2["macro_type_mean"] == 56.25 and m2["missing"] == ["Interaction_T1_9"] and m2["errors"] == 1


@pytest.mark.parametrize("dataset,n_opt", [("how2qa", 4), ("tvqa", 5), ("vlep", 2)])
def test_overall_accuracy_datasets(dataset: str, n_opt: int) -> None:
    prefix = {"how2qa": "HOW2QA", "tvqa": "TVQA", "vlep": "VLEP"}[dataset]
    samples = [_sample(dataset, f"{prefix}_{i}", answer=i % n_opt, n_opt=n_opt) for i in range(8)]
    preds = {s.qid: (s.answer if i < 3 else (s.answer + 1) % n_opt) for i, s in enumerate(samples)}
    m = score_multiple_choice(dataset, preds, samples)
    assert m["overall"] == 37.5 and m["display"] == {"Acc": 37.5} and m["per_type"] == {prefix: 37.5}
    assert "macro_type_mean" not in m and "category" not in m


def test_prediction_file_formats(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_text(
        '{"qid": "a", "prediction": 2}\n{"qid": "b", "prediction": "C"}\n{"qid": "c", "prediction": null}'
    )
    preds = load_predictions("tvqa", p)
    assert dict(preds) == {"a": 2, "b": 2} and preds.errors == ["c"]
    p.write_text('[{"qid": "CW_1_2", "prediction": 1, "target": 3}]')
    preds = load_predictions("nextqa", p)
    assert dict(preds) == {"CW_1_2": 1} and preds.answers == {"CW_1_2": 3}
    p.write_text('{"qid": "a", "prediction": "maybe"}')
    with pytest.raises(InputError, match="p.jsonl:1"):
        load_predictions("tvqa", p)


def test_score_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown dataset"):
        score_multiple_choice("foo", {}, [])
    with pytest.raises(InputError, match="not multiple choice"):
        score_multiple_choice("qvhighlights", {}, [])
    s = [_sample("tvqa", "TVQA_0", 1, 5)]
    s[0].answer = None
    with pytest.raises(InputError, match="no gold answer"):
        score_multiple_choice("tvqa", {"TVQA_0": 1}, s)


def test_star_headline_needs_all_four_types() -> None:
    """The official STAR rule: the type mean only when all four types are scored, else the pooled accuracy."""
    samples, preds = [], {}
    for qtype, n, n_right in (("Interaction", 4, 3), ("Sequence", 2, 1), ("Prediction", 2, 2)):
        for i in range(n):
            qid = f"{qtype}_T1_{i}"
            samples.append(_sample("star", qid, answer=1))
            preds[qid] = 1 if i < n_right else 0
    m = score_multiple_choice("star", preds, samples)
    assert m["macro_type_mean"] is None and m["display"]["Avg."] is None
    assert m["headline"] == {"metric": "overall", "value": 75.0} and m["pooled"] == 75.0
    # a type outside the four is reported but never enters the mean
    samples.append(_sample("star", "Feasibility_T1_0", answer=1))
    samples.append(_sample("star", "Other_T1_0", answer=1))
    preds.update({"Feasibility_T1_0": 1, "Other_T1_0": 0})
    m = score_multiple_choice("star", preds, samples)
    assert m["per_type"]["Other"] == 0.0 and list(m["display"])[:5] == [*STAR_TYPES, "Other"]
    assert m["macro_type_mean"] == float(f"{(75.0 + 50.0 + 100.0 + 100.0) / 4:.2f}")


def test_dataset_spec_score_equals_name_based_scorer(nextqa: list[Sample]) -> None:
    preds = {s.qid: (s.answer if i % 4 else 1) for i, s in enumerate(nextqa)}
    spec = get_dataset("nextqa")
    assert spec.score(preds, nextqa) == score_multiple_choice("nextqa", preds, nextqa)
    assert list(spec.score(preds, nextqa)["display"]) == list(spec.columns)
    with pytest.raises(InputError, match="not multiple choice"):
        score_multiple_choice("qvhighlights", preds, nextqa)


# ---------------------------------------------------------------------------------------------------- frame accuracy


def _independent_frame_accuracy(records: list[dict], gt: list[dict]) -> tuple[float, int]:
    windows = {g["qid"]: np.array(g["relevant_windows"], dtype=float).reshape(-1, 2) for g in gt}
    hits = total = 0
    for r in records:
        t = np.array(r["frame_sec"], dtype=float)[:, None]
        w = windows[r["qid"]]
        inside = ((t >= w[None, :, 0]) & (t <= w[None, :, 1])).any(axis=1)
        hits += int((inside == np.array(r["frame_yes"], dtype=bool)).sum())
        total += len(t)
    return float(f"{100.0 * hits / total:.2f}"), total


def test_frame_accuracy_on_val_against_independent_computation(
    qvh: tuple[list[dict], list[dict], str],
) -> None:
    _, gt, _ = qvh
    rng = np.random.default_rng(0)
    records = []
    for g in gt:
        n = 75
        times = np.sort(rng.uniform(0, g["duration"], n)).round(3)
        # exact window ends count as inside
        times[:2] = [g["relevant_windows"][0][0], g["relevant_windows"][0][1]]
        records.append(
            {"qid": g["qid"], "frame_sec": times.tolist(), "frame_yes": rng.integers(0, 2, n).tolist()}
        )
    expected, total = _independent_frame_accuracy(records, gt)
    got = frame_accuracy(records, gt)
    assert got["accuracy"] == expected and got["frames"] == total == 75 * 1550 and got["queries"] == 1550
    assert got["unit"] == "percent"
    perfect = [
        {**r, "frame_yes": frame_labels(r["frame_sec"], g["relevant_windows"])}
        for r, g in zip(records, gt, strict=True)
    ]
    assert frame_accuracy(perfect, gt)["accuracy"] == 100.0


def test_frame_accuracy_by_hand_and_errors() -> None:
    gt = [{"qid": 1, "relevant_windows": [[2, 4], [10, 12]]}, {"qid": 2}]  # qid 2: no windows -> all negative
    sub = [
        {"qid": 1, "frame_sec": [1.0, 2.0, 4.0, 4.5, 11.0], "frame_yes": [0, 1, 0, 0, 1]},  # labels 0 1 1 0 1
        {"qid": 2, "frame_sec": [0.0, 5.0], "frame_yes": [1, 0]},
    ]
    assert frame_labels([1.0, 2.0, 4.0, 4.5, 11.0], gt[0]["relevant_windows"]) == [0, 1, 1, 0, 1]
    out = frame_accuracy(sub, gt)
    assert out == {
        "accuracy": 71.43,
        "frames": 7,
        "queries": 2,
        "positive_frames": 3,
        "yes_frames": 3,
        "unit": "percent",
    }
    with pytest.raises(InputError, match="1 ground-truth queries without decisions"):
        frame_accuracy(sub[:1], gt)
    assert frame_accuracy(sub[:1], gt, match_number=False)["frames"] == 5
    with pytest.raises(InputError, match="5 frame_sec values but 4 frame_yes values"):
        frame_accuracy([{**sub[0], "frame_yes": [0, 1, 0, 0]}, sub[1]], gt)
    with pytest.raises(InputError, match="0 or 1"):
        frame_accuracy([{**sub[0], "frame_yes": [0, 1, 0, 0, 2]}, sub[1]], gt)
    with pytest.raises(InputError, match="1 of 2 submission lines lack frame_sec/frame_yes"):
        score_submission([sub[0], {"qid": 2, "pred_relevant_windows": [[0, 1, 1.0]]}], gt)


def test_submission_with_frames_keeps_official_metrics(qvh: tuple[list[dict], list[dict], str]) -> None:
    sub, gt, ref_text = qvh
    with_frames = [{**e, "frame_sec": [1.0, 3.0], "frame_yes": [1, 0]} for e in sub]
    metrics = score_submission(with_frames, gt)
    frames = metrics.pop("frame_accuracy")
    assert json.dumps(metrics, indent=4) == ref_text
    assert frames["frames"] == 3100 and metrics_table({**metrics, "frame_accuracy": frames}).row_count == 15
    only = score_submission([{"qid": e["qid"], "frame_sec": [1.0], "frame_yes": [0]} for e in sub], gt)
    assert list(only) == ["frame_accuracy"] and metrics_table(only).row_count == 1
