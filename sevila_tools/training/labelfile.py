"""Pseudo-label files: one JSON line per (question, epoch) with the frames and their ``yes``/``no`` labels."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sevila_tools.errors import InputError

LABELS_NAME = "pseudo_labels.jsonl"
LABELS_SUMMARY_NAME = "pseudo_labels_summary.json"


@dataclass
class LabelSet:
    """Pseudo-labels of one question's frames for one epoch."""

    frame_indices: list[int]
    labels: list[str]
    epoch: int | None = None
    fps: float | None = None


def _check_record(rec: Any, where: str) -> None:
    if not isinstance(rec, dict) or not {"qid", "frame_indices", "labels"} <= set(rec):
        raise InputError(f"{where}: a label record needs qid, frame_indices and labels")
    idx, labels = rec["frame_indices"], rec["labels"]
    if (
        not isinstance(idx, list)
        or not isinstance(labels, list)
        or not idx
        or len(idx) != len(labels)
        or any(lab not in ("yes", "no") for lab in labels)
        or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in idx)
    ):
        raise InputError(f"{where}: frame_indices must be frame numbers and labels 'yes'/'no', equal length")


def read_label_lines(path: Path) -> list[dict[str, Any]]:
    """The records of a label JSONL (checked); a missing file is a one-line error."""
    if not path.is_file():
        raise InputError(f"labels file not found: {path}")
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: invalid JSON line ({exc.msg})") from None
        _check_record(rec, f"{path}:{lineno}")
        records.append(rec)
    return records


def read_labels(path: str | Path) -> dict[str, list[LabelSet]]:
    """Read a pseudo-label JSONL into ``{qid: [LabelSet sorted by epoch]}``; every record must label the
    same number of frames."""
    path = Path(path)
    out: dict[str, list[LabelSet]] = {}
    lengths = set()
    for rec in read_label_lines(path):
        lengths.add(len(rec["frame_indices"]))
        epoch, fps = rec.get("epoch"), rec.get("fps")
        out.setdefault(str(rec["qid"]), []).append(
            LabelSet(
                [int(i) for i in rec["frame_indices"]],
                list(rec["labels"]),
                None if epoch is None else int(epoch),
                None if fps is None else float(fps),
            )
        )
    if not out:
        raise InputError(f"{path}: no label records")
    if len(lengths) > 1:
        raise InputError(
            f"{path}: records label different numbers of frames ({sorted(lengths)}); use one frames"
        )
    for sets in out.values():
        sets.sort(key=lambda s: -1 if s.epoch is None else s.epoch)
    return out


def labels_for_epoch(sets: Sequence[LabelSet], epoch: int) -> LabelSet:
    """The label set of ``epoch``: the record made for that epoch, else record ``epoch % len(sets)``."""
    for s in sets:
        if s.epoch == epoch:
            return s
    return sets[epoch % len(sets)]


def summarize_labels(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Positive rate overall and per question type of pseudo-label records."""
    by: dict[str, list[int]] = {}
    frames = positives = no_positive = 0
    for r in records:
        n_yes = list(r["labels"]).count("yes")
        frames += len(r["labels"])
        positives += n_yes
        no_positive += n_yes == 0
        acc = by.setdefault(str(r.get("qtype")), [0, 0, 0])
        acc[0] += 1
        acc[1] += len(r["labels"])
        acc[2] += n_yes
    return {
        "records": len(records),
        "questions": len({r["qid"] for r in records}),
        "frames": frames,
        "positive_rate": positives / frames if frames else 0.0,
        "records_without_positive": no_positive,
        "by_qtype": {
            k: {"records": v[0], "frames": v[1], "positive_rate": v[2] / v[1] if v[1] else 0.0}
            for k, v in sorted(by.items())
        },
    }
