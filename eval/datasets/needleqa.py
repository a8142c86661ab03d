"""NeedleQA: the synthetic set of ``sevila synth needleqa`` (NExT-QA csv columns plus template and event span)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from sevila_tools.errors import InputError

from ..scorers.multiple_choice import Tally, pct, score_choices
from ._reading import AnnotationFile, as_float, optional_answer
from ._spec import DatasetSpec, Reader, Sample, register_dataset

TEMPLATE_ORDER = ("shape", "place", "shape_place")
COLUMNS = (*TEMPLATE_ORDER, "Acc")
REQUIRED = ("video", "question", "answer", "qid", "template", "event_start", "event_end",
            *(f"a{i}" for i in range(5)))


def _read(file: AnnotationFile, spec: DatasetSpec, paths: Callable[[str, str, str], str]) -> list[Sample]:
    reader = csv.DictReader(io.StringIO(file.text, newline=""))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{file.path}:1: needleqa csv header lacks column(s) {', '.join(missing)}")
    samples = []
    for row in reader:
        where = f"{file.path}:{reader.line_num}"
        if None in row or any(row.get(c) is None for c in REQUIRED):
            raise InputError(f"{where}: wrong number of columns")
        video, qid = row["video"].strip(), row["qid"].strip()
        window = [as_float(row["event_start"], "event_start", where), as_float(row["event_end"], "event_end", where)]
        extra: dict[str, Any] = {"event_window": window, "nextqa_type": row.get("type", "")}
        samples.append(Sample(
            dataset=spec.name, qid=f"{video}_{qid}", video_id=video, video=paths(video, video, where),
            question=row["question"] + "?", options=[row[f"a{i}"] + "." for i in range(5)],
            answer=optional_answer(row, "answer", 5, where), qtype=row["template"].strip(), extra=extra,
        ))
    return samples


def template_breakdown(tally: Tally, order: list[str]) -> dict[str, Any]:
    """Accuracy per question template and overall (the headline)."""
    overall = pct(tally.n_correct, tally.n)
    display: dict[str, float | None] = {t: pct(tally.correct.get(t, 0), tally.counts.get(t, 0))
                                        for t in TEMPLATE_ORDER}
    display["Acc"] = overall
    return {"headline": {"metric": "overall", "value": overall}, "display": display}


def score_needleqa(predictions: Any, samples: Any, **kw: Any) -> dict:
    """Accuracy per template (the event named by its shape, place or both) and overall; see ``score_choices``."""
    kw.setdefault("dataset", "needleqa")
    return score_choices(predictions, samples, breakdown=template_breakdown, type_order=TEMPLATE_ORDER,
                         known_types=TEMPLATE_ORDER, **kw)


SPEC = register_dataset(DatasetSpec(
    name="needleqa",
    description="NeedleQA: synthetic videos where one short event answers the question (5 options)",
    readers=(Reader("needleqa csv (NExT-QA columns + template, event_start, event_end)", ("csv",),
                    lambda header: "template" in header and "event_start" in header, _read),),
    prompt_style="default",
    num_options=5,
    task="multiple_choice",
    scorer=score_needleqa,
    headline="overall",
    columns=COLUMNS,
))
