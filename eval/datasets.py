"""Annotation loaders for the SeViLA benchmarks (``shared/spec/evaluation.md`` §1).

One entry point, :func:`load_annotations`, reads either the **official raw release** of a dataset
(NExT-QA csv, STAR json list, How2QA/TVQA/VLEP/QVHighlights JSON Lines) or **SeViLA's preprocessed JSON
list** and returns a list of :class:`Sample`. The format is detected from the file content, not its name.

Text is kept exactly as SeViLA's prompts need it: the official NExT-QA csv gets SeViLA's conversion
(``?`` appended to the question, ``.`` to each option); SeViLA JSON text is kept as stored.

Ids: NExT-QA samples always use the official scorer key ``f"{video}_{qid}"`` (also when read from SeViLA
JSON, whose ``{type}_{video}_{qid}`` id is kept in ``extra["sevila_qid"]``); QVHighlights samples use
``str(qid)`` of the integer query id; the other datasets use SeViLA's ids (``HOW2QA_{i}``, ``TVQA_{i}``,
``VLEP_{example_id}``, STAR ``question_id``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from sevila_tools.errors import InputError

DATASETS: tuple[str, ...] = ("nextqa", "star", "how2qa", "tvqa", "vlep", "qvhighlights")
"""Dataset names accepted everywhere in the toolkit."""

NUM_OPTIONS: dict[str, int] = {"nextqa": 5, "star": 4, "how2qa": 4, "tvqa": 5, "vlep": 2}
"""Number of answer options of each multiple-choice dataset."""

QID_PREFIX: dict[str, str] = {
    "how2qa": "HOW2QA",
    "tvqa": "TVQA",
    "vlep": "VLEP",
    "qvhighlights": "QVHighlight",
}

NEXTQA_CSV_COLUMNS = ("video", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4")
_SEVILA_NEXTQA_QID = re.compile(r"^([A-Z]{2})_(\d+)_(\d+)$")


class Sample(BaseModel):
    """One annotated question (multiple-choice) or query (QVHighlights)."""

    dataset: str
    qid: str
    video_id: str
    video: str
    question: str
    options: list[str]
    answer: int | None
    qtype: str | None
    start: float | None = None
    end: float | None = None
    duration: float | None = None
    windows: list[list[float]] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class PreflightReport(BaseModel):
    """Result of :func:`preflight`: which videos are missing or unreadable, and the samples that can run."""

    missing: list[str] = Field(default_factory=list)
    unreadable: list[str] = Field(default_factory=list)
    ok: list[Sample] = Field(default_factory=list)
    total_videos: int = 0
    unreadable_reasons: dict[str, str] = Field(default_factory=dict)

    def summary(self) -> str:
        """One line: ``"N of M videos missing (first: a, b, c)"`` (+ the unreadable count when any)."""
        line = f"{len(self.missing)} of {self.total_videos} videos missing"
        if self.missing:
            line += f" (first: {', '.join(self.missing[:3])})"
        if self.unreadable:
            line += f"; {len(self.unreadable)} unreadable (first: {', '.join(self.unreadable[:3])})"
        return line


# ----------------------------------------------------------------------------------------------------
# helpers


def check_dataset(dataset: str) -> str:
    """Return the normalised dataset name or raise :class:`InputError` listing the valid names."""
    name = str(dataset).strip().lower()
    if name not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; valid names: {', '.join(DATASETS)}")
    return name


def _read_text(path: Path, what: str = "annotation file") -> str:
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} is a directory, not a file: {path}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_json_or_jsonl(path: str | Path, what: str = "annotation file") -> tuple[str, Any]:
    """Parse ``path`` as one JSON document or as JSON Lines.

    Returns ``("json", obj)`` for a single JSON document (list or dict) or
    ``("jsonl", [(line_no, obj), ...])``. JSON Lines files may lack the final newline; blank lines are
    skipped. Errors name the file and line.
    """
    path = Path(path)
    text = _read_text(path, what)
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{what} {path} is empty")
    if stripped[0] == "[":
        try:
            return "json", json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    records: list[tuple[int, Any]] = []
    lines = text.splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            if not records:
                # maybe a pretty-printed single JSON document
                try:
                    return "json", json.loads(stripped)
                except json.JSONDecodeError as exc2:
                    raise InputError(f"{path}:{exc2.lineno}: invalid JSON ({exc2.msg})") from None
            raise InputError(f"{path}:{lineno}: invalid JSON line ({exc.msg})") from None
    if len(records) == 1 and isinstance(records[0][1], dict) and _looks_like_result_dict(records[0][1]):
        return "json", records[0][1]
    return "jsonl", records


def _looks_like_result_dict(obj: dict) -> bool:
    """True for a NExT-QA style ``{"key": {"prediction": ...}}`` document (not a JSONL record)."""
    if not obj:
        return False
    first = next(iter(obj.values()))
    return isinstance(first, dict) and "prediction" in first


def _field(rec: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(rec, Mapping):
        raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if key not in rec:
        raise InputError(f"{where}: missing field {key!r}")
    return rec[key]


def _as_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool):
        raise InputError(f"{where}: field {key!r} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise InputError(f"{where}: field {key!r} must be an integer, got {value!r}")


def _as_float(value: Any, key: str, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field {key!r} must be a number, got {value!r}") from None
    if math.isnan(out):
        return None
    return out


def _split_ts(ts: Any, where: str) -> tuple[float | None, float | None]:
    """SeViLA's ``ts.split('-')`` for How2QA/TVQA (``"st-ed"``); also accepts ``[st, ed]``."""
    if ts is None:
        return None, None
    if isinstance(ts, (list, tuple)):
        if len(ts) != 2:
            raise InputError(f"{where}: field 'ts' must have 2 values, got {ts!r}")
        return _as_float(ts[0], "ts", where), _as_float(ts[1], "ts", where)
    parts = str(ts).split("-")
    if len(parts) != 2:
        raise InputError(f"{where}: field 'ts' must look like 'start-end', got {ts!r}")
    return _as_float(parts[0], "ts", where), _as_float(parts[1], "ts", where)


def _load_video_map(video_map: str | Path | Mapping[str, str] | None) -> dict[str, str] | None:
    if video_map is None:
        return None
    if isinstance(video_map, Mapping):
        return {str(k): str(v) for k, v in video_map.items()}
    path = Path(video_map)
    try:
        obj = json.loads(_read_text(path, "video map file"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise InputError(f"video map file {video_map} must be one JSON object {{video id: relative path}}")
    return {str(k): str(v) for k, v in obj.items()}


class _Resolver:
    """Turns a video id / relative stem into ``Sample.video``."""

    def __init__(self, videos_root: str | Path | None, video_map: dict[str, str] | None, ext: str, src: Path):
        self.root = Path(videos_root) if videos_root is not None else None
        self.map = video_map
        self.ext = ext if (not ext or ext.startswith(".")) else "." + ext
        self.src = src

    def __call__(self, video_id: str, stem: str, where: str) -> str:
        if self.map is not None:
            if video_id not in self.map:
                raise InputError(f"{where}: video {video_id!r} is not in the video map")
            stem = self.map[video_id]
        if self.root is None:
            return stem
        return str(self.root / (stem + self.ext))


# ----------------------------------------------------------------------------------------------------
# format readers


def _load_nextqa_csv(path: Path, text: str, resolve: _Resolver) -> list[Sample]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing_cols = [c for c in NEXTQA_CSV_COLUMNS if c not in header]
    if missing_cols:
        raise InputError(f"{path}:1: NExT-QA csv header lacks column(s) {', '.join(missing_cols)}")
    samples: list[Sample] = []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row or any(row.get(c) is None for c in NEXTQA_CSV_COLUMNS):
            raise InputError(f"{where}: wrong number of columns")
        video = row["video"].strip()
        qid = row["qid"].strip()
        qtype = row["type"].strip()
        options = [row[f"a{i}"] + "." for i in range(5)]
        answer = None if row["answer"].strip() == "" else _as_int(row["answer"], "answer", where)
        if answer is not None and not 0 <= answer < 5:
            raise InputError(f"{where}: answer {answer} is not an option index 0..4")
        extra: dict[str, Any] = {
            "sevila_qid": f"{qtype}_{video}_{qid}",
            "qid_in_video": qid,
        }
        for key in ("frame_count", "width", "height"):
            if row.get(key, "") not in ("", None):
                extra[key] = _as_int(row[key], key, where)
        samples.append(
            Sample(
                dataset="nextqa",
                qid=f"{video}_{qid}",
                video_id=video,
                video=resolve(video, video, where),
                question=row["question"] + "?",
                options=options,
                answer=answer,
                qtype=qtype,
                extra=extra,
            )
        )
    return samples


def _load_sevila_json(dataset: str, path: Path, records: list, resolve: _Resolver) -> list[Sample]:
    samples: list[Sample] = []
    for i, rec in enumerate(records):
        where = f"{path}: record {i}"
        video = str(_field(rec, "video", where))
        raw_qid = str(_field(rec, "qid", where))
        if "num_option" in rec:
            n_opt = _as_int(rec["num_option"], "num_option", where)
        else:
            n_opt = 0
            while f"a{n_opt}" in rec:
                n_opt += 1
        if n_opt < 1:
            raise InputError(f"{where}: no options (fields a0, a1, ...)")
        options = [str(_field(rec, f"a{j}", where)) for j in range(n_opt)]
        answer = None
        if rec.get("answer") is not None and rec.get("answer") != "":
            answer = _as_int(rec["answer"], "answer", where)
            if not 0 <= answer < n_opt:
                raise InputError(f"{where}: answer {answer} is not an option index 0..{n_opt - 1}")
        qtype = raw_qid.split("_")[0]
        qid = raw_qid
        video_id = video
        extra: dict[str, Any] = {"sevila_qid": raw_qid}
        if dataset == "nextqa":
            m = _SEVILA_NEXTQA_QID.match(raw_qid)
            if m:
                qid = f"{m.group(2)}_{m.group(3)}"
                video_id = m.group(2)
            else:
                video_id = video.rsplit("/", 1)[-1]
        samples.append(
            Sample(
                dataset=dataset,
                qid=qid,
                video_id=video_id,
                video=resolve(video_id, video, where),
                question=str(rec.get("question", "")),
                options=options,
                answer=answer,
                qtype=qtype,
                start=_as_float(rec.get("start"), "start", where),
                end=_as_float(rec.get("end"), "end", where),
                extra=extra,
            )
        )
    return samples


def _load_star_raw(path: Path, records: list, resolve: _Resolver) -> list[Sample]:
    samples: list[Sample] = []
    for i, rec in enumerate(records):
        where = f"{path}: record {i}"
        qid = str(_field(rec, "question_id", where))
        video_id = str(_field(rec, "video_id", where))
        choices = _field(rec, "choices", where)
        if not isinstance(choices, list) or not choices:
            raise InputError(f"{where}: field 'choices' must be a non-empty list")
        options = []
        for j, ch in enumerate(choices):
            text = ch.get("choice") if isinstance(ch, Mapping) else None
            if text is None:
                raise InputError(f"{where}: choices[{j}] has no 'choice' text")
            options.append(str(text))
        answer = None
        gold = rec.get("answer")
        if gold is not None and gold != "":
            # SeViLA's notebook keeps the last choice whose text equals the answer text
            for j, text in enumerate(options):
                if text == gold:
                    answer = j
            if answer is None:
                raise InputError(f"{where}: answer {gold!r} is not one of the choices")
        extra = {k: rec[k] for k in ("question_program", "choices") if k in rec}
        samples.append(
            Sample(
                dataset="star",
                qid=qid,
                video_id=video_id,
                video=resolve(video_id, video_id, where),
                question=str(_field(rec, "question", where)),
                options=options,
                answer=answer,
                qtype=qid.split("_")[0],
                start=_as_float(rec.get("start"), "start", where),
                end=_as_float(rec.get("end"), "end", where),
                extra=extra,
            )
        )
    return samples


def _load_how2qa_tvqa(
    dataset: str, path: Path, records: list[tuple[int, Any]], resolve: _Resolver
) -> list[Sample]:
    n_opt = NUM_OPTIONS[dataset]
    prefix = QID_PREFIX[dataset]
    samples: list[Sample] = []
    for i, (lineno, rec) in enumerate(records):
        where = f"{path}:{lineno}"
        vid = str(_field(rec, "vid_name", where))
        options = [str(_field(rec, f"a{j}", where)) for j in range(n_opt)]
        answer = None
        if rec.get("answer_idx") is not None and rec.get("answer_idx") != "":
            answer = _as_int(rec["answer_idx"], "answer_idx", where)
            if not 0 <= answer < n_opt:
                raise InputError(f"{where}: answer_idx {answer} is not an option index 0..{n_opt - 1}")
        start, end = _split_ts(rec.get("ts"), where)
        extra = {k: rec[k] for k in ("qid", "ts", "show_name") if k in rec}
        samples.append(
            Sample(
                dataset=dataset,
                qid=f"{prefix}_{i}",
                video_id=vid,
                video=resolve(vid, vid, where),
                question=str(_field(rec, "q", where)),
                options=options,
                answer=answer,
                qtype=prefix,
                start=start,
                end=end,
                extra=extra,
            )
        )
    return samples


def _load_vlep(path: Path, records: list[tuple[int, Any]], resolve: _Resolver) -> list[Sample]:
    samples: list[Sample] = []
    for lineno, rec in records:
        where = f"{path}:{lineno}"
        vid = str(_field(rec, "vid_name", where))
        events = _field(rec, "events", where)
        if not isinstance(events, list) or len(events) != 2:
            raise InputError(f"{where}: field 'events' must be a list of 2 event texts")
        answer = None
        if rec.get("answer") is not None and rec.get("answer") != "":
            answer = _as_int(rec["answer"], "answer", where)
            if answer not in (0, 1):
                raise InputError(f"{where}: answer {answer} is not an option index 0..1")
        ts = rec.get("ts")
        start = end = None
        if ts is not None:
            if not isinstance(ts, (list, tuple)) or len(ts) != 2:
                raise InputError(f"{where}: field 'ts' must be [start, end]")
            start, end = _as_float(ts[0], "ts", where), _as_float(ts[1], "ts", where)
        example_id = _field(rec, "example_id", where)
        samples.append(
            Sample(
                dataset="vlep",
                qid=f"VLEP_{example_id}",
                video_id=vid,
                video=resolve(vid, vid, where),
                question="",
                options=[str(e) for e in events],
                answer=answer,
                qtype="VLEP",
                start=start,
                end=end,
                extra={"example_id": example_id},
            )
        )
    return samples


def _windows(value: Any, where: str) -> list[list[float]]:
    if not isinstance(value, list) or any(
        not isinstance(w, (list, tuple)) or len(w) < 2 or not all(isinstance(x, (int, float)) for x in w[:2])
        for w in value
    ):
        raise InputError(f"{where}: field 'relevant_windows' must be a list of [start, end] pairs")
    return [[float(w[0]), float(w[1])] for w in value]


def _load_qvh(
    path: Path, records: Iterable[tuple[str, Any]], resolve: _Resolver, sevila: bool
) -> list[Sample]:
    samples: list[Sample] = []
    for where, rec in records:
        raw_qid = _field(rec, "qid", where)
        vid = str(_field(rec, "video" if sevila else "vid", where))
        if sevila:
            text_qid = str(raw_qid)
            suffix = text_qid.split("_")[-1]
            qid_int = _as_int(suffix, "qid", where)
        else:
            qid_int = _as_int(raw_qid, "qid", where)
        duration = _as_float(_field(rec, "duration", where), "duration", where)
        gt: dict[str, Any] = {
            "qid": qid_int,
            "query": str(_field(rec, "query", where)),
            "duration": rec["duration"],
            "vid": vid,
        }
        windows = None
        if "relevant_windows" in rec:
            windows = _windows(rec["relevant_windows"], where)
            gt["relevant_windows"] = rec["relevant_windows"]
        for key in ("relevant_clip_ids", "saliency_scores"):
            if key in rec:
                gt[key] = rec[key]
        if sevila:
            gt["sevila_qid"] = str(raw_qid)
        samples.append(
            Sample(
                dataset="qvhighlights",
                qid=str(qid_int),
                video_id=vid,
                video=resolve(vid, vid, where),
                question=gt["query"],
                options=[],
                answer=None,
                qtype=None,
                duration=duration,
                windows=windows,
                extra=gt,
            )
        )
    return samples


def load_annotations(
    dataset: str,
    path: str | Path,
    videos_root: str | Path | None = None,
    video_map: str | Path | Mapping[str, str] | None = None,
    video_ext: str = ".mp4",
) -> list[Sample]:
    """Load an annotation file of ``dataset`` into :class:`Sample` objects (format detected from the content).

    Args:
        dataset: one of :data:`DATASETS`.
        path: official raw file (NExT-QA csv, STAR json, How2QA/TVQA/VLEP/QVHighlights jsonl) or a
            SeViLA JSON list.
        videos_root: folder holding the videos; ``Sample.video`` =
            ``videos_root / (relative stem + video_ext)``; without it, the relative stem.
        video_map: ``{video id: relative stem}`` (e.g. NExT-QA ``map_vid_vidorID.json``), a path to such
            a JSON file or a dict; every video id must be in it.
        video_ext: file extension appended to the relative stem.

    Raises:
        InputError: unknown dataset, missing/unreadable file, malformed record (the message names the
            file and line).
    """
    dataset = check_dataset(dataset)
    path = Path(path)
    resolve = _Resolver(videos_root, _load_video_map(video_map), video_ext, path)
    text = _read_text(path)
    head = text.lstrip()[:200]
    if dataset == "nextqa" and (path.suffix.lower() == ".csv" or head.startswith("video,")):
        return _load_nextqa_csv(path, text, resolve)
    if path.suffix.lower() == ".csv" or head.startswith("video,"):
        raise InputError(f"{path}: csv annotations are only supported for nextqa, not {dataset}")

    kind, obj = read_json_or_jsonl(path)
    if kind == "json":
        if not isinstance(obj, list):
            raise InputError(
                f"{path}: expected a JSON list of records or JSON Lines, got a JSON {type(obj).__name__}"
            )
        if not obj:
            raise InputError(f"{path}: no records")
        first = obj[0]
        if not isinstance(first, Mapping):
            raise InputError(f"{path}: record 0: expected a JSON object, got {type(first).__name__}")
        if "question_id" in first and "choices" in first:
            if dataset != "star":
                raise InputError(f"{path}: looks like a raw STAR file but dataset is {dataset}")
            return _load_star_raw(path, obj, resolve)
        if dataset == "qvhighlights" or "query" in first:
            if dataset != "qvhighlights":
                raise InputError(f"{path}: looks like a QVHighlights file but dataset is {dataset}")
            sevila = "video" in first
            return _load_qvh(path, ((f"{path}: record {i}", r) for i, r in enumerate(obj)), resolve, sevila)
        return _load_sevila_json(dataset, path, obj, resolve)

    records: list[tuple[int, Any]] = obj
    if not records:
        raise InputError(f"{path}: no records")
    for lineno, rec in records:
        if not isinstance(rec, Mapping):
            raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
    if dataset == "qvhighlights":
        return _load_qvh(
            path, ((f"{path}:{ln}", r) for ln, r in records), resolve, "vid" not in records[0][1]
        )
    if dataset in ("how2qa", "tvqa"):
        return _load_how2qa_tvqa(dataset, path, records, resolve)
    if dataset == "vlep":
        return _load_vlep(path, records, resolve)
    raise InputError(
        f"{path}: JSON Lines annotations are not a {dataset} format (expected "
        f"{'the NExT-QA csv' if dataset == 'nextqa' else 'STAR_*.json'} or a SeViLA JSON list)"
    )


def qvh_ground_truth(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """QVHighlights samples back to the official GT record layout used by the scorer."""
    out = []
    for s in samples:
        if s.dataset != "qvhighlights":
            raise InputError(f"sample {s.qid} is not a QVHighlights sample")
        out.append({k: v for k, v in s.extra.items() if k != "sevila_qid"})
    return out


def preflight(samples: Sequence[Sample], check_readable: bool = False) -> PreflightReport:
    """Check that every sample's video exists (and, with ``check_readable``, that it decodes).

    Readability uses ``sevila_tools.video.probe`` (imported lazily), which raises ``VideoError`` for
    bad videos.
    """
    seen: dict[str, bool] = {}
    missing: list[str] = []
    unreadable: list[str] = []
    reasons: dict[str, str] = {}
    probe = None
    if check_readable:
        from sevila_tools.video import probe  # lazy: needs the video backend
    from sevila_tools.errors import VideoError

    for s in samples:
        if s.video in seen:
            continue
        p = Path(s.video)
        if not p.exists():
            missing.append(s.video)
            seen[s.video] = False
            continue
        good = True
        if probe is not None:
            try:
                probe(p)
            except VideoError as exc:
                good = False
                unreadable.append(s.video)
                reasons[s.video] = str(exc)
            except Exception as exc:  # a decoder crash must not abort the whole preflight
                good = False
                unreadable.append(s.video)
                reasons[s.video] = f"{type(exc).__name__}: {exc}"
        seen[s.video] = good
    ok = [s for s in samples if seen.get(s.video)]
    return PreflightReport(
        missing=missing, unreadable=unreadable, ok=ok, total_videos=len(seen), unreadable_reasons=reasons
    )
