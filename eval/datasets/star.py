"""STAR: the official ``STAR_{split}.json`` list or SeViLA's JSON list (Charades videos)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sevila_tools.errors import InputError

from ..scorers.multiple_choice import STAR_COLUMNS, score_star
from ._reading import AnnotationFile, as_float, field_of
from ._sevila_json import sevila_list_reader
from ._spec import DatasetSpec, Reader, Sample, register_dataset


def _choices(rec: Mapping[str, Any], where: str) -> list[str]:
    choices = field_of(rec, "choices", where)
    if not isinstance(choices, list) or not choices:
        raise InputError(f"{where}: field 'choices' must be a non-empty list")
    options = []
    for j, ch in enumerate(choices):
        text = ch.get("choice") if isinstance(ch, Mapping) else None
        if text is None:
            raise InputError(f"{where}: choices[{j}] has no 'choice' text")
        options.append(str(text))
    return options


def _gold(rec: Mapping[str, Any], options: list[str], where: str) -> int | None:
    gold = rec.get("answer")
    if gold is None or gold == "":
        return None
    answer = None
    for j, text in enumerate(options):  # SeViLA's conversion keeps the last choice equal to the answer text
        if text == gold:
            answer = j
    if answer is None:
        raise InputError(f"{where}: answer {gold!r} is not one of the choices")
    return answer


def _read_raw(file: AnnotationFile, spec: DatasetSpec, paths: Callable[[str, str, str], str]) -> list[Sample]:
    samples: list[Sample] = []
    for where, rec in file.records:
        qid = str(field_of(rec, "question_id", where))
        video_id = str(field_of(rec, "video_id", where))
        options = _choices(rec, where)
        samples.append(
            Sample(
                dataset=spec.name,
                qid=qid,
                video_id=video_id,
                video=paths(video_id, video_id, where),
                question=str(field_of(rec, "question", where)),
                options=options,
                answer=_gold(rec, options, where),
                qtype=qid.split("_")[0],
                start=as_float(rec.get("start"), "start", where),
                end=as_float(rec.get("end"), "end", where),
                extra={k: rec[k] for k in ("question_program", "choices") if k in rec},
            )
        )
    return samples


SPEC = register_dataset(
    DatasetSpec(
        name="star",
        description="STAR: situated reasoning on Charades videos (4 options; headline = mean of the 4 type accuracies)",
        readers=(
            Reader(
                "official STAR json list (question_id, video_id, choices, answer text)",
                ("json",),
                lambda rec: "question_id" in rec and "choices" in rec,
                _read_raw,
            ),
            sevila_list_reader(),
        ),
        prompt_style="default",
        num_options=4,
        task="multiple_choice",
        scorer=score_star,
        headline="macro_type_mean",
        columns=STAR_COLUMNS,
        headline_column="Avg.",
    )
)
