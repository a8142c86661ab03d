"""Converters between ``frames.jsonl`` and the frame-index files of BOLT, AKS, TSPO and VideoITG.

Field meanings follow each project's public code (``docs/frames.md``, "Formats"). Where a format lacks what the
other side needs, the caller passes it: the annotation order (AKS lists and VideoITG ``doc_id`` are positions in
the benchmark's annotation file), and optionally an ``fps`` to turn frame numbers into times and back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sevila_tools.errors import InputError

from .format import Candidates, FrameRecord, Provenance


@dataclass(frozen=True)
class Question:
    """One question of an annotation file, in file order (what positional formats are keyed by)."""

    question_id: str
    video: str
    question: str | None = None
    fields: dict[str, Any] | None = None  # the question's own fields (TSPO files carry them)


def _source(fmt: str, path: str | Path | None) -> Provenance:
    return Provenance(source_format=fmt, source_file=None if path is None else str(path))


def _to_times(frames: Sequence[int], fps: float) -> list[float]:
    return [i / fps for i in frames]


def _to_frames(times: Sequence[float], fps: float) -> list[int]:
    return [int(round(t * fps)) for t in times]  # BOLT's rule


def fill_with_fps(rec: FrameRecord, fps: float | None) -> FrameRecord:
    """With a frame rate, fill what the record lacks: times from frame numbers (``i / fps``) or frame numbers
    from times (``round(t * fps)``, BOLT's rule). Without one (or with nothing missing) the record as is."""
    if fps is None:
        return rec
    update: dict[str, Any] = {"fps": rec.fps or fps}
    if rec.timestamps_s is None and rec.native_indices is not None:
        update["timestamps_s"] = _to_times(rec.native_indices, fps)
    if rec.native_indices is None and rec.timestamps_s is not None:
        update["native_indices"] = _to_frames(rec.timestamps_s, fps)
    return FrameRecord.model_validate({**rec.model_dump(), **update})


def _record_fps(rec: FrameRecord, has: str, lacks: str) -> float:
    if rec.fps is None:
        raise InputError(f"question {rec.question_id} has {has} but no {lacks} and no fps; pass --fps to convert it")
    return rec.fps


def native_frames(rec: FrameRecord) -> list[int]:
    """The record's frame numbers (from its times and fps when it has no frame numbers)."""
    if rec.native_indices is not None:
        return list(rec.native_indices)
    assert rec.timestamps_s is not None
    return _to_frames(rec.timestamps_s, _record_fps(rec, "times", "frame numbers"))


def frame_times(rec: FrameRecord) -> list[float]:
    """The record's times in seconds (from its frame numbers and fps when it has no times)."""
    if rec.timestamps_s is not None:
        return list(rec.timestamps_s)
    assert rec.native_indices is not None
    return _to_times(rec.native_indices, _record_fps(rec, "frame numbers", "times"))


def _by_order(records: Sequence[FrameRecord], order: Sequence[Question], fmt: str) -> list[FrameRecord]:
    """Records in annotation order; every question needs one (the target format is positional)."""
    by_id = {r.question_id: r for r in records}
    missing = [q.question_id for q in order if q.question_id not in by_id]
    if missing:
        raise InputError(f"{len(missing)} of {len(order)} questions of the annotation file have no frames "
                         f"(first: {', '.join(missing[:3])}); {fmt} files are positional, so every question needs one")
    return [by_id[q.question_id] for q in order]


def _record(dataset: str, q_id: str, video: str, fmt: str, path: str | Path | None, **kw: Any) -> FrameRecord:
    frames = kw.get("native_indices") if kw.get("native_indices") is not None else kw.get("timestamps_s")
    try:
        return FrameRecord(dataset=dataset, question_id=str(q_id), video=str(video), selector=fmt,
                           k=len(frames or []), provenance=_source(fmt, path), **kw)
    except ValidationError as exc:
        msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise InputError(f"{path}: question {q_id}: {msg}") from None


# ---------------------------------------------------------------------------------------------- BOLT


def bolt_video_key(rec: FrameRecord) -> str:
    """BOLT's fork looks a video up by its file name without extension."""
    return Path(rec.video_path).stem if rec.video_path else rec.video


def to_bolt(records: Sequence[FrameRecord]) -> dict[str, list[dict[str, Any]]]:
    """``{video: [{question_id, question, frames: [seconds]}]}``; the fork matches a question by its text."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.question is None:
            raise InputError(f"question {rec.question_id} has no question text, which BOLT's reader matches on")
        entry = {"question_id": rec.question_id, "question": rec.question, "frames": frame_times(rec)}
        out.setdefault(bolt_video_key(rec), []).append(entry)
    return out


def from_bolt(data: Any, dataset: str, path: str | Path | None = None) -> list[FrameRecord]:
    """BOLT's file as records: times only (its fork rounds ``t * fps`` against each video)."""
    if not isinstance(data, dict):
        raise InputError(f"{path}: a BOLT file is a JSON object {{video: [entries]}}")
    out = []
    for video, entries in data.items():
        for e in entries:
            if not isinstance(e, dict) or "question_id" not in e or "frames" not in e:
                raise InputError(f"{path}: BOLT entries need question_id and frames (video {video})")
            out.append(_record(dataset, e["question_id"], video, "bolt", path, question=e.get("question"),
                               timestamps_s=sorted(float(t) for t in e["frames"])))
    return out


# ---------------------------------------------------------------------------------------------- AKS


def to_aks(records: Sequence[FrameRecord], order: Sequence[Question]) -> dict[str, list[list[Any]]]:
    """``selected_frames.json``: one sorted list of frame numbers per question in annotation order; with
    candidate scores for every question also ``scores.json`` and ``frames.json`` (its ``outscores`` files)."""
    ranked = _by_order(records, order, "AKS")
    out: dict[str, list[list[Any]]] = {"selected_frames.json": [sorted(native_frames(r)) for r in ranked]}
    cands = [r.candidates for r in ranked]
    if all(c is not None and c.native_indices is not None for c in cands):
        out["scores.json"] = [list(c.scores) for c in cands]  # type: ignore[union-attr]
        out["frames.json"] = [list(c.native_indices) for c in cands]  # type: ignore[union-attr, arg-type]
    return out


def from_aks(selected: Any, order: Sequence[Question], dataset: str, path: str | Path | None = None,
             scores: Any = None, frames: Any = None) -> list[FrameRecord]:
    """AKS's lists as records, question ``i`` being the annotation file's ``i``-th; the candidates' scores and
    frame numbers come from ``scores.json``/``frames.json`` when given."""
    if not isinstance(selected, list) or not all(isinstance(e, list) for e in selected):
        raise InputError(f"{path}: an AKS file is a JSON list of frame-number lists")
    if len(selected) != len(order):
        raise InputError(f"{path} holds {len(selected)} questions but the annotation file has {len(order)} "
                         "(AKS skips videos it cannot read, which shifts every later question)")
    out = []
    for i, (sel, q) in enumerate(zip(selected, order, strict=True)):
        cand = None
        if scores is not None and frames is not None:
            cand = Candidates(native_indices=[int(x) for x in frames[i]], scores=[float(x) for x in scores[i]])
        out.append(_record(dataset, q.question_id, q.video, "aks", path, question=q.question,
                           native_indices=sorted(int(x) for x in sel), candidates=cand))
    return out


# ---------------------------------------------------------------------------------------------- TSPO

_ID_KEYS = ("question_id", "qid", "id")
_VIDEO_KEYS = ("video", "videoID", "video_id", "video_name")


def to_tspo(records: Sequence[FrameRecord], fields: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """TSPO's dataset file: each question's own fields plus ``frame_idx`` (frame numbers, ascending)."""
    out = []
    for rec in records:
        row: dict[str, Any] = {"question_id": rec.question_id, "video": rec.video}
        if rec.question:
            row["question"] = rec.question
        row.update((fields or {}).get(rec.question_id, {}))
        row["frame_idx"] = native_frames(rec)
        out.append(row)
    return out


def _pick(row: dict[str, Any], keys: Sequence[str], what: str, path: str | Path | None) -> str:
    for key in keys:
        if row.get(key) is not None:
            return str(row[key])
    raise InputError(f"{path}: a TSPO record has no {what} field ({' or '.join(keys)}); its keys: {', '.join(row)}")


def from_tspo(data: Any, dataset: str, path: str | Path | None = None) -> list[FrameRecord]:
    """TSPO's records as records (``frame_idx`` are frame numbers; TSPO stores them as floats)."""
    if not isinstance(data, list) or not all(isinstance(r, dict) and "frame_idx" in r for r in data):
        raise InputError(f"{path}: a TSPO file is a JSON list of records holding frame_idx")
    return [
        _record(dataset, _pick(r, _ID_KEYS, "question id", path), _pick(r, _VIDEO_KEYS, "video", path), "tspo",
                path, question=r.get("question"), native_indices=sorted(int(float(x)) for x in r["frame_idx"]))
        for r in data
    ]


# ---------------------------------------------------------------------------------------------- VideoITG


def to_videoitg(records: Sequence[FrameRecord], order: Sequence[Question]) -> list[dict[str, Any]]:
    """One VideoITG result per question: ``doc_id`` (position in the annotation file), ``index`` (frame numbers,
    best score first, as its grounding output orders them), ``logits`` (those scores), ``num_frames`` (as its
    code writes it: the number of videos, 1), ``contexts`` and ``video_path``."""
    ranked = _by_order(records, order, "VideoITG")
    pos = {q.question_id: i for i, q in enumerate(order)}
    out = []
    for rec in ranked:
        frames = native_frames(rec)
        scores = rec.scores if rec.scores is not None and None not in rec.scores else None
        rank = sorted(range(len(frames)), key=lambda j: (-scores[j], j)) if scores else list(range(len(frames)))
        row: dict[str, Any] = {"doc_id": pos[rec.question_id], "index": [frames[j] for j in rank]}
        if scores:
            row["logits"] = [scores[j] for j in rank]
        row.update(num_frames=1, contexts=rec.question or "", video_path=rec.video_path or rec.video)
        out.append(row)
    return out


def from_videoitg(rows: Sequence[dict[str, Any]], order: Sequence[Question], dataset: str,
                  path: str | Path | None = None, keyframes: int | None = None) -> list[FrameRecord]:
    """VideoITG results as records: the first ``keyframes`` entries of ``index`` (all when None), as its
    readers take them, sorted into temporal order; the whole ranked list becomes the candidates."""
    out = []
    for row in rows:
        if "doc_id" not in row or not isinstance(row.get("index"), list):
            raise InputError(f"{path}: a VideoITG record needs doc_id and an index list")
        doc = int(row["doc_id"])
        if not 0 <= doc < len(order):
            raise InputError(f"{path}: doc_id {doc} is outside the annotation file's {len(order)} questions")
        index = [int(x) for x in row["index"]]
        logits = [float(x) for x in row["logits"]] if isinstance(row.get("logits"), list) else None
        n = len(index) if keyframes is None else min(keyframes, len(index))
        keep = sorted(range(n), key=lambda j: (index[j], j))
        cand = Candidates(native_indices=index, scores=logits) if logits and len(logits) == len(index) else None
        q = order[doc]
        out.append(_record(dataset, q.question_id, q.video, "videoitg", path, question=q.question,
                           native_indices=[index[j] for j in keep], candidates=cand,
                           scores=[logits[j] for j in keep] if cand else None))
    return out
