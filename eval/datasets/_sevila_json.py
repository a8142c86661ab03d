"""SeViLA's preprocessed JSON list, shared by the multiple-choice datasets (fields in ``docs/datasets.md``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sevila_tools.errors import InputError

from ._reading import AnnotationFile, as_float, as_int, field_of, optional_answer
from ._spec import DatasetSpec, Reader, Sample

IdRule = Callable[[str, str], tuple[str, str]]
"""``ids(raw_qid, video) -> (qid, video_id)``."""


def _keep_ids(raw_qid: str, video: str) -> tuple[str, str]:
    return raw_qid, video


def _options(rec: Mapping[str, Any], where: str) -> list[str]:
    if "num_option" in rec:
        n_opt = as_int(rec["num_option"], "num_option", where)
    else:
        n_opt = 0
        while f"a{n_opt}" in rec:
            n_opt += 1
    if n_opt < 1:
        raise InputError(f"{where}: no options (fields a0, a1, ...)")
    return [str(field_of(rec, f"a{j}", where)) for j in range(n_opt)]


def read_sevila_list(
    file: AnnotationFile, spec: DatasetSpec, paths: Callable[[str, str, str], str], ids: IdRule = _keep_ids
) -> list[Sample]:
    """Samples from a SeViLA JSON list: ``video``, ``qid`` (type = text before the first ``_``), ``a0..``."""
    samples: list[Sample] = []
    for where, rec in file.records:
        video = str(field_of(rec, "video", where))
        raw_qid = str(field_of(rec, "qid", where))
        options = _options(rec, where)
        qid, video_id = ids(raw_qid, video)
        samples.append(
            Sample(
                dataset=spec.name,
                qid=qid,
                video_id=video_id,
                video=paths(video_id, video, where),
                question=str(rec.get("question", "")),
                options=options,
                answer=optional_answer(rec, "answer", len(options), where),
                qtype=raw_qid.split("_")[0],
                start=as_float(rec.get("start"), "start", where),
                end=as_float(rec.get("end"), "end", where),
                extra={"sevila_qid": raw_qid},
            )
        )
    return samples


def _is_sevila_record(rec: Mapping[str, Any]) -> bool:
    return ("qid" in rec or "video" in rec) and "query" not in rec


def sevila_list_reader(ids: IdRule = _keep_ids) -> Reader:
    """The SeViLA JSON list reader, with an optional rule deriving (qid, video id) from SeViLA's qid."""
    return Reader(
        "SeViLA JSON list (video, qid, a0.., answer)",
        ("json",),
        _is_sevila_record,
        lambda file, spec, paths: read_sevila_list(file, spec, paths, ids),
    )
