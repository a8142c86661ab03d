"""NExT-QA: the official csv (with SeViLA's text conversion) or SeViLA's JSON list; VidOR id map for paths."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import Any

from sevila_tools.errors import InputError

from ..scorers.multiple_choice import NEXTQA_COLUMNS, score_nextqa
from ._reading import AnnotationFile, as_int, optional_answer
from ._sevila_json import sevila_list_reader
from ._spec import DatasetSpec, Reader, Sample, register_dataset

CSV_COLUMNS = ("video", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4")
_SEVILA_QID = re.compile(r"^([A-Z]{2})_(\d+)_(\d+)$")


def _read_csv(file: AnnotationFile, spec: DatasetSpec, paths: Callable[[str, str, str], str]) -> list[Sample]:
    reader = csv.DictReader(io.StringIO(file.text, newline=""))
    header = reader.fieldnames or []
    missing_cols = [c for c in CSV_COLUMNS if c not in header]
    if missing_cols:
        raise InputError(f"{file.path}:1: NExT-QA csv header lacks column(s) {', '.join(missing_cols)}")
    samples: list[Sample] = []
    for row in reader:
        where = f"{file.path}:{reader.line_num}"
        if None in row or any(row.get(c) is None for c in CSV_COLUMNS):
            raise InputError(f"{where}: wrong number of columns")
        video, qid, qtype = row["video"].strip(), row["qid"].strip(), row["type"].strip()
        extra: dict[str, Any] = {"sevila_qid": f"{qtype}_{video}_{qid}", "qid_in_video": qid}
        for key in ("frame_count", "width", "height"):
            if row.get(key, "") not in ("", None):
                extra[key] = as_int(row[key], key, where)
        samples.append(
            Sample(
                dataset=spec.name,
                qid=f"{video}_{qid}",
                video_id=video,
                video=paths(video, video, where),
                question=row["question"] + "?",  # SeViLA appends unconditionally
                options=[row[f"a{i}"] + "." for i in range(5)],
                answer=optional_answer(row, "answer", 5, where),
                qtype=qtype,
                extra=extra,
            )
        )
    return samples


def _sevila_ids(raw_qid: str, video: str) -> tuple[str, str]:
    """SeViLA's ``TYPE_video_qid`` -> the official key ``video_qid`` and the numeric video id."""
    m = _SEVILA_QID.match(raw_qid)
    if m:
        return f"{m.group(2)}_{m.group(3)}", m.group(2)
    return raw_qid, video.rsplit("/", 1)[-1]


SPEC = register_dataset(
    DatasetSpec(
        name="nextqa",
        description="NExT-QA: causal, temporal and descriptive questions on VidOR videos (5 options)",
        readers=(
            Reader(
                "official csv (video, question, answer, qid, type, a0..a4)",
                ("csv",),
                lambda _h: True,
                _read_csv,
            ),
            sevila_list_reader(_sevila_ids),
        ),
        prompt_style="default",
        num_options=5,
        task="multiple_choice",
        scorer=score_nextqa,
        headline="overall",
        columns=NEXTQA_COLUMNS,
        video_map_hint="NExT-QA videos are found through the VidOR id map: add --video-map map_vid_vidorID.json "
        "(it comes with the NExT-QA annotations)",
    )
)
