"""Collect the numbers of ``scripts/results_tiny.sh`` into ``RESULTS/results.json`` and print them as markdown tables
(the tables of ``docs/results.md``), with the issue's targets checked.

    python scripts/collect_results.py RUN/results TEST_CSV

Besides the commands' own metrics it computes, from each run's ``predictions.jsonl`` and the test csv's
``event_start``/``event_end``, the keyframe hit rate: the share of questions with a keyframe inside the asked
event.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

STAGES = (("none", "untrained (copy of the base Answerer's Q-Former)"), ("pretrain", "pre-trained on spans"),
          ("refine_alone", "self-refined alone"), ("refine", "pre-trained + self-refined"))


def _summary(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text())


def events(test_csv: Path) -> dict[str, tuple[float, float]]:
    """The asked event of each question: ``{qid: (start, end)}`` in seconds (NeedleQA's ``video_qid`` keys)."""
    with open(test_csv, newline="") as f:
        return {f"{r['video']}_{r['qid']}": (float(r["event_start"]), float(r["event_end"])) for r in csv.DictReader(f)}


def qa_accuracy(folder: Path, windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Accuracy (%), question count and keyframe hit rate (%) of one ``sevila eval`` on NeedleQA."""
    m = _summary(folder)["metrics"]
    rows = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    hits = [any(windows[r["qid"]][0] <= t <= windows[r["qid"]][1] for t in r["keyframe_sec"]) for r in rows]
    return {"acc": m["overall"], "n": m["n"], "per_type": m["per_type"],
            "hit": round(100 * sum(hits) / len(hits), 2)}


def frame_accuracy(folder: Path) -> dict[str, Any]:
    """The Localizer's frame accuracy (%) and the official avg_acc-style extras of one QVHighlights eval."""
    m = _summary(folder)["metrics"]
    fa = m["frame_accuracy"]
    return {"frame_acc": fa["accuracy"], "yes_frames": fa["yes_frames"], "positive_frames": fa["positive_frames"],
            "frames": fa["frames"]}


def ablation(folder: Path) -> dict[str, float]:
    """Accuracy (%) of each selector of one ``sevila ablate`` run."""
    res = json.loads((folder / "results.json").read_text())
    return {row["selector"]: row["headline"] for row in res["rows"]}


def collect(results: Path, test_csv: Path) -> dict[str, Any]:
    w = events(test_csv)
    out: dict[str, Any] = {
        "tables_1_2": {"uniform4": qa_accuracy(results / "t1-uniform4", w),
                       "localizer_32_4": qa_accuracy(results / "t1-localizer", w)},
        "tables_3_9": ablation(results / "t3-ablate"),
        "table_5": {s: qa_accuracy(results / f"t5-{s}", w) for s, _ in STAGES},
        "qvhighlights": {s: frame_accuracy(results / f"qvh-{s}") for s, _ in STAGES},
    }
    t1, t5, qvh, t3 = out["tables_1_2"], out["table_5"], out["qvhighlights"], out["tables_3_9"]
    out["targets"] = {
        "uniform-4 <= 50 %": t1["uniform4"]["acc"] <= 50,
        "Localizer 32->4 >= 85 %": t1["localizer_32_4"]["acc"] >= 85,
        "oracle-4 >= uniform-4": t3["oracle"] >= t1["uniform4"]["acc"],
        "self-refinement alone: QVH frame accuracy +20 points": qvh["refine_alone"]["frame_acc"]
        >= qvh["none"]["frame_acc"] + 20,
        "self-refinement alone: keyframe hit rate +20 points": t5["refine_alone"]["hit"] >= t5["none"]["hit"] + 20,
        "PT+SR >= PT (QA accuracy)": t5["refine"]["acc"] >= t5["pretrain"]["acc"],
        "PT+SR >= PT (frame accuracy)": qvh["refine"]["frame_acc"] >= qvh["pretrain"]["frame_acc"],
    }
    return out


def markdown(r: dict[str, Any]) -> str:
    t1, t3, t5, qvh = r["tables_1_2"], r["tables_3_9"], r["table_5"], r["qvhighlights"]
    lines = ["| frames for the Answerer | accuracy (%) | keyframe hit rate (%) |", "|---|---|---|",
             f"| 4 uniform | {t1['uniform4']['acc']:.2f} | {t1['uniform4']['hit']:.2f} |",
             f"| Localizer: 32 uniform -> top 4 | {t1['localizer_32_4']['acc']:.2f} | "
             f"{t1['localizer_32_4']['hit']:.2f} |", "",
             "| selector (32 -> 4) | accuracy (%) |", "|---|---|"]
    lines += [f"| {name} | {acc:.2f} |" for name, acc in t3.items()]
    lines += ["", "| Localizer | QA accuracy, zero-shot Answerer (%) | keyframe hit rate (%) | frame accuracy on "
              "spans (%) |", "|---|---|---|---|"]
    lines += [f"| {label} | {t5[s]['acc']:.2f} | {t5[s]['hit']:.2f} | {qvh[s]['frame_acc']:.2f} |"
              for s, label in STAGES]
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {k} | {'yes' if v else 'NO'} |" for k, v in r["targets"].items()]
    return "\n".join(lines)


def main() -> None:
    results = Path(sys.argv[1])
    r = collect(results, Path(sys.argv[2]))
    (results / "results.json").write_text(json.dumps(r, indent=2) + "\n")
    print(markdown(r))


if __name__ == "__main__":
    main()
