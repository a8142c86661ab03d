"""The How2QA / TVQA release format: JSON Lines with ``vid_name``, ``q``, ``a0..``, ``answer_idx``, ``ts``."""

from __future__ import annotations

from collections.abc import Callable

from ._reading import AnnotationFile, field_of, optional_answer, split_ts
from ._spec import DatasetSpec, Reader, Sample


def qa_jsonl_reader(prefix: str) -> Reader:
    """Reader of the release JSON Lines; the i-th line becomes qid ``f"{prefix}_{i}"`` and type ``prefix``."""

    def read(file: AnnotationFile, spec: DatasetSpec, paths: Callable[[str, str, str], str]) -> list[Sample]:
        samples: list[Sample] = []
        for i, (where, rec) in enumerate(file.records):
            vid = str(field_of(rec, "vid_name", where))
            options = [str(field_of(rec, f"a{j}", where)) for j in range(spec.num_options)]
            start, end = split_ts(rec.get("ts"), where)
            samples.append(
                Sample(
                    dataset=spec.name,
                    qid=f"{prefix}_{i}",
                    video_id=vid,
                    video=paths(vid, vid, where),
                    question=str(field_of(rec, "q", where)),
                    options=options,
                    answer=optional_answer(rec, "answer_idx", spec.num_options, where),
                    qtype=prefix,
                    start=start,
                    end=end,
                    extra={k: rec[k] for k in ("qid", "ts", "show_name") if k in rec},
                )
            )
        return samples

    return Reader(
        "release JSON Lines (vid_name, ts, q, a0.., answer_idx)", ("jsonl",), lambda r: "vid_name" in r, read
    )
