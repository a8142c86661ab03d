"""VLEP: ``vlep_{split}_release.jsonl`` or SeViLA's JSON list; flat or YouTube/TV two-folder video layout."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from sevila_tools.errors import InputError

from ..scorers.multiple_choice import ACCURACY_COLUMNS, score_accuracy
from ._reading import AnnotationFile, field_of, optional_answer, split_ts
from ._sevila_json import sevila_list_reader
from ._spec import DatasetSpec, Reader, Sample, VideoContext, default_video_path, register_dataset

YOUTUBE, TV = "youtube", "tv"
"""Names of the two folders of the official layout (keys of ``videos`` or sub-folders of the video root)."""


def _two_folders(ctx: VideoContext) -> Mapping[str, Path] | None:
    if ctx.folders is not None:
        if set(ctx.folders) != {YOUTUBE, TV}:
            raise InputError(
                f"VLEP video folders must be named {YOUTUBE!r} and {TV!r}, got {sorted(ctx.folders)}"
            )
        return ctx.folders
    if ctx.root is not None and (ctx.root / YOUTUBE).is_dir() and (ctx.root / TV).is_dir():
        return {YOUTUBE: ctx.root / YOUTUBE, TV: ctx.root / TV}
    return None


def vlep_video_path(video_id: str, stem: str, ctx: VideoContext, where: str) -> str:
    """Two-folder layout: an id with ``:`` is a YouTube clip (``youtube/<id>``); any other id is a TV clip
    whose last three characters are dropped (``tv/<id[:-3]>``). Otherwise the flat rule (``root/<id>``)."""
    folders = None if ctx.id_map is not None else _two_folders(ctx)
    if folders is None:
        return default_video_path(video_id, stem, ctx, where)
    if ":" in stem:
        return str(folders[YOUTUBE] / (stem + ctx.ext))
    return str(folders[TV] / (stem[:-3] + ctx.ext))


def _read_raw(file: AnnotationFile, spec: DatasetSpec, paths: Callable[[str, str, str], str]) -> list[Sample]:
    samples: list[Sample] = []
    for where, rec in file.records:
        vid = str(field_of(rec, "vid_name", where))
        events = field_of(rec, "events", where)
        if not isinstance(events, list) or len(events) != 2:
            raise InputError(f"{where}: field 'events' must be a list of 2 event texts")
        start, end = split_ts(rec.get("ts"), where)
        example_id = field_of(rec, "example_id", where)
        samples.append(
            Sample(
                dataset=spec.name,
                qid=f"VLEP_{example_id}",
                video_id=vid,
                video=paths(vid, vid, where),
                question="",
                options=[str(e) for e in events],
                answer=optional_answer(rec, "answer", 2, where),
                qtype="VLEP",
                start=start,
                end=end,
                extra={"example_id": example_id},
            )
        )
    return samples


SPEC = register_dataset(
    DatasetSpec(
        name="vlep",
        description="VLEP: which of two events happens next in a TV or YouTube clip (2 options, no question)",
        readers=(
            Reader(
                "release JSON Lines (example_id, vid_name, ts, events, answer)",
                ("jsonl",),
                lambda r: "vid_name" in r,
                _read_raw,
            ),
            sevila_list_reader(),
        ),
        prompt_style="next_event",
        num_options=2,
        task="multiple_choice",
        scorer=score_accuracy,
        headline="overall",
        columns=ACCURACY_COLUMNS,
        video_path=vlep_video_path,
    )
)
