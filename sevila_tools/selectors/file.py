"""The ``file`` selector: the keyframes a frames file names for each question (``docs/frames.md``).

``sevila eval --selector file --selector-option path=FILE`` makes the Answerer read exactly the frames of a
``frames.jsonl`` (from ``sevila select`` or converted from another selector's file), so any selector's frames can
be scored with SeViLA's Answerer.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from sevila_tools.errors import InputError
from sevila_tools.frames import FrameRecord, FramesFile, read_frames_file
from sevila_tools.selectors.base import Selection, Selector, SelectorInput, register

#: parsed files by path (the pre-flight check and the run read the same file once)
_FILES: dict[str, tuple[float, FramesFile]] = {}


def load_frames(path: str) -> FramesFile:
    """The parsed frames file (cached while its modification time stays the same)."""
    import os

    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        raise InputError(f"frames file not found: {path}") from None
    hit = _FILES.get(path)
    if hit is None or hit[0] != mtime:
        hit = (mtime, read_frames_file(path))
        _FILES[path] = hit
    return hit[1]


def resolve_frames(rec: FrameRecord, fps: float, num_frames: int) -> tuple[list[int], str]:
    """Native frame numbers of a record in a video with ``fps`` and ``num_frames``, and what they came from.

    The record's frame numbers are used when it has them and was made on a video with the same frame rate and
    length; otherwise its times, as ``round(t * fps)`` clipped to the video (BOLT's rule)."""
    same_video = (rec.fps is None or math.isclose(rec.fps, fps, rel_tol=1e-4)) and (
        rec.num_frames is None or rec.num_frames == num_frames
    )
    if rec.native_indices is not None and (same_video or rec.timestamps_s is None):
        frames, source = list(rec.native_indices), "native_indices"
    else:
        assert rec.timestamps_s is not None
        frames = [min(max(int(round(t * fps)), 0), num_frames - 1) for t in rec.timestamps_s]
        source = "timestamps_s"
    past = [i for i in frames if i >= num_frames]
    if past:
        raise InputError(f"question {rec.question_id}: frame {past[0]} of the frames file is past the end of "
                         f"{rec.video} ({num_frames} frames)")
    return sorted(frames), source


@register
class FileSelector(Selector):
    """Keyframes read from a ``frames.jsonl`` file, question by question (no model involved)."""

    name: ClassVar[str] = "file"
    description: ClassVar[str] = "Frames named by a frames.jsonl file, question by question (dataset runs only)."
    rank: ClassVar[int] = 90
    needs_question_id: ClassVar[bool] = True

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str | None = Field(default=None, description="The frames.jsonl file to read keyframes from.")

    def __init__(self, path: str | None = None) -> None:
        if not path:
            raise InputError("the file selector needs its file: --selector-option path=FRAMES.jsonl")
        self.path = path
        self.frames = load_frames(path)

    @classmethod
    def num_candidates(cls, num_frames: int, num_keyframes: int) -> int:
        """Only enough candidates to know the video's frame rate and length: the keyframes come from the file."""
        return 1

    @classmethod
    def unavailable_reason(cls, options: dict[str, Any], random_weights: bool) -> str | None:
        return None if options.get("path") else "it needs a frames file (option path)"

    @classmethod
    def check_questions(cls, dataset: str, questions: list[tuple[str, str]], k: int, options: dict[str, Any]) -> None:
        """The file must be for this dataset, name every question, and hold ``k`` frames for each."""
        if not options.get("path"):
            raise InputError("the file selector needs its file: --selector-option path=FRAMES.jsonl")
        frames = load_frames(str(options["path"]))
        frames.check_dataset(dataset)
        frames.check_covers(q for q, _ in questions)
        wrong = [q for q, _ in questions if frames.records[q].k != k]
        if wrong:
            rec = frames.records[wrong[0]]
            raise InputError(f"{frames.path} holds {rec.k} frames for question {wrong[0]} "
                             f"({len(wrong)} such questions); run with --keyframes {rec.k}")

    def config(self) -> dict[str, Any]:
        return {"path": self.path}

    def fingerprint(self) -> dict[str, Any]:
        from sevila_tools.provenance import file_sha256

        return {"selector": self.name, "path": self.path, "sha256": file_sha256(self.frames.path)}

    def select(self, inp: SelectorInput, k: int) -> Selection:
        qid = inp.question_id
        rec = self.frames.records.get(qid) if qid is not None else None
        if rec is None:
            raise InputError(f"{self.path} has no frames for question {qid}")
        if rec.k != k:
            raise InputError(f"{self.path} holds {rec.k} frames for question {qid}; run with --keyframes {rec.k}")
        cand = inp.candidates
        frames, source = resolve_frames(rec, cand.fps, cand.num_video_frames)
        pos = {idx: p for p, idx in enumerate(cand.indices)}
        scores: list[float | None] = list(rec.scores) if rec.scores is not None else [None] * len(frames)
        return Selection(
            selector=self.name, config=self.config(),
            candidate_frame_indices=list(cand.indices), candidate_times=list(cand.timestamps), candidate_scores=None,
            frame_indices=frames, times=[i / cand.fps for i in frames],
            candidate_positions=[pos.get(i) for i in frames], scores=scores,
            extra={"source": source, "file_selector": rec.selector},
        )


__all__ = ["FileSelector", "resolve_frames"]
