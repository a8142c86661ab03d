"""Reading annotation files: text (plain or gzip), JSON / JSON Lines / csv detection, typed field access."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sevila_tools.errors import InputError

FileKind = Literal["csv", "json", "jsonl"]


def read_text(path: str | Path, what: str = "annotation file") -> str:
    """The UTF-8 text of ``path`` (a ``.gz`` file is decompressed); one-line :class:`InputError` otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} is a directory, not a file: {path}")
    try:
        data = path.read_bytes()
        if path.suffix.lower() == ".gz":
            data = gzip.decompress(data)
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise InputError(f"cannot read {what} {path}: {reason}") from None


def _looks_like_result_dict(obj: dict) -> bool:
    """True for a NExT-QA style ``{"key": {"prediction": ...}}`` document (not a JSON Lines record)."""
    if not obj:
        return False
    first = next(iter(obj.values()))
    return isinstance(first, dict) and "prediction" in first


def parse_json_or_jsonl(text: str, path: Path) -> tuple[str, Any]:
    """Parse ``text`` as one JSON document (``("json", obj)``) or JSON Lines (``("jsonl", [(line, obj)])``)."""
    stripped = text.strip()
    if stripped[0] == "[":
        try:
            return "json", json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    records: list[tuple[int, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            if not records:  # maybe one pretty-printed JSON document
                try:
                    return "json", json.loads(stripped)
                except json.JSONDecodeError as exc2:
                    raise InputError(f"{path}:{exc2.lineno}: invalid JSON ({exc2.msg})") from None
            raise InputError(f"{path}:{lineno}: invalid JSON line ({exc.msg})") from None
    if len(records) == 1 and isinstance(records[0][1], dict) and _looks_like_result_dict(records[0][1]):
        return "json", records[0][1]
    return "jsonl", records


def read_json_or_jsonl(path: str | Path, what: str = "annotation file") -> tuple[str, Any]:
    """Read ``path`` as one JSON document or as JSON Lines (the final newline and blank lines are optional).

    Returns ``("json", obj)`` or ``("jsonl", [(line_no, obj), ...])``; errors name the file and line.
    """
    path = Path(path)
    text = read_text(path, what)
    if not text.strip():
        raise InputError(f"{what} {path} is empty")
    return parse_json_or_jsonl(text, path)


@dataclass
class AnnotationFile:
    """A parsed annotation file: its kind, its records with their locations, and the first record.

    For csv files ``records`` is empty (csv readers parse ``text`` themselves) and ``first`` maps each
    header column to ``""``, so readers can test for columns the same way as for JSON fields.
    """

    path: Path
    kind: FileKind
    text: str
    records: list[tuple[str, Any]] = field(default_factory=list)
    first: Mapping[str, Any] = field(default_factory=dict)


def parse_annotation_file(path: str | Path) -> AnnotationFile:
    """Read ``path`` and detect its kind from the content: JSON list, JSON Lines or csv (with a header)."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise InputError(f"annotation file {path} is empty")
    if text.lstrip()[0] not in "[{":
        header = next(csv.reader(io.StringIO(text, newline="")), [])
        return AnnotationFile(path, "csv", text, first={str(c).strip(): "" for c in header})
    kind, obj = parse_json_or_jsonl(text, path)
    if kind == "json":
        if not isinstance(obj, list):
            raise InputError(
                f"{path}: expected a JSON list of records or JSON Lines, got a JSON {type(obj).__name__}"
            )
        records = [(f"{path}: record {i}", rec) for i, rec in enumerate(obj)]
    else:
        records = [(f"{path}:{lineno}", rec) for lineno, rec in obj]
    if not records:
        raise InputError(f"{path}: no records")
    for where, rec in records:
        if not isinstance(rec, Mapping):
            raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    return AnnotationFile(path, kind, text, records, records[0][1])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- typed fields


def field_of(rec: Mapping[str, Any], key: str, where: str) -> Any:
    """``rec[key]`` or a one-line error naming the record."""
    if not isinstance(rec, Mapping):
        raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if key not in rec:
        raise InputError(f"{where}: missing field {key!r}")
    return rec[key]


def as_int(value: Any, key: str, where: str) -> int:
    """An integer from an int, an integral float or a numeric string."""
    if isinstance(value, bool):
        raise InputError(f"{where}: field {key!r} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise InputError(f"{where}: field {key!r} must be an integer, got {value!r}")


def as_float(value: Any, key: str, where: str) -> float | None:
    """A float, or ``None`` for a missing / empty / NaN value."""
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field {key!r} must be a number, got {value!r}") from None
    return None if math.isnan(out) else out


def optional_answer(rec: Mapping[str, Any], key: str, n_options: int, where: str) -> int | None:
    """The gold option index in ``rec[key]`` (``None`` when absent or empty), checked against the options."""
    value = rec.get(key)
    if value is None or value == "":
        return None
    answer = as_int(value, key, where)
    if not 0 <= answer < n_options:
        raise InputError(f"{where}: {key} {answer} is not an option index 0..{n_options - 1}")
    return answer


def split_ts(ts: Any, where: str) -> tuple[float | None, float | None]:
    """``"start-end"`` (How2QA/TVQA) or ``[start, end]`` into two seconds values."""
    if ts is None:
        return None, None
    if isinstance(ts, (list, tuple)):
        if len(ts) != 2:
            raise InputError(f"{where}: field 'ts' must have 2 values, got {ts!r}")
        return as_float(ts[0], "ts", where), as_float(ts[1], "ts", where)
    parts = str(ts).split("-")
    if len(parts) != 2:
        raise InputError(f"{where}: field 'ts' must look like 'start-end', got {ts!r}")
    return as_float(parts[0], "ts", where), as_float(parts[1], "ts", where)


def load_video_map(video_map: str | Path | Mapping[str, str] | None) -> dict[str, str] | None:
    """``{video id: relative stem}`` from a dict or a JSON file (e.g. NExT-QA ``map_vid_vidorID.json``)."""
    if video_map is None:
        return None
    if isinstance(video_map, Mapping):
        return {str(k): str(v) for k, v in video_map.items()}
    path = Path(video_map)
    try:
        obj = json.loads(read_text(path, "video map file"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise InputError(f"video map file {video_map} must be one JSON object {{video id: relative path}}")
    return {str(k): str(v) for k, v in obj.items()}
