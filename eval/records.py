"""Prediction files: JSON Lines streamed and fsynced per batch, torn-tail tolerant, merged atomically."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sevila_tools.errors import InputError
from sevila_tools.files import FILE_MODE, atomic_write_text

log = logging.getLogger("sevila_tools.eval")

PREDICTIONS_NAME = "predictions.jsonl"
ERRORS_NAME = "errors.jsonl"
SHARD_SUFFIX = ".rank{rank}.part"
_SHARD_RE = re.compile(r"\.rank\d+\.part$")


def qid_of(rec: dict[str, Any]) -> str:
    """The record's question id as a string (``qid`` in prediction files, ``question_id`` in frames files)."""
    return str(rec["qid"] if "qid" in rec else rec.get("question_id"))


def is_error(rec: dict[str, Any]) -> bool:
    """True for an error record (no prediction)."""
    return bool(rec.get("error"))


def _parse_line(line: bytes) -> dict[str, Any]:
    rec = json.loads(line.decode("utf-8"))
    if not isinstance(rec, dict) or ("qid" not in rec and "question_id" not in rec):
        raise ValueError("not a record with a qid")
    return rec


def _repair(path: Path, data: bytes, good_end: int) -> None:
    if good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    elif data and not data.endswith(b"\n"):
        with open(path, "ab") as f:
            f.write(b"\n")


def read_records(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a JSON Lines prediction file; a torn last line (killed mid-write) is ignored.

    With ``repair`` the torn tail is cut off the file so it can be appended to. An invalid line that is not
    the last one is a one-line :class:`InputError` naming ``file:line``."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    pos = good_end = lineno = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl
        line = data[pos:end]
        lineno += 1
        last = nl < 0 or data[nl + 1 :].strip() == b""
        if line.strip():
            try:
                records.append(_parse_line(line))
            except (ValueError, UnicodeDecodeError) as exc:
                if last:
                    log.warning("%s: ignoring torn last line %d", path, lineno)
                    break
                raise InputError(f"{path}:{lineno}: invalid prediction record ({exc})") from None
        good_end = end if nl < 0 else nl + 1
        pos = end + 1
    if repair:
        _repair(path, data, good_end)
    return records


def dumps(rec: dict[str, Any]) -> str:
    """One record as one JSON line (no newline)."""
    return json.dumps(rec, ensure_ascii=False, separators=(", ", ": "))


def atomic_write_lines(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write records as JSON Lines atomically."""
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))


class Writer:
    """Append-only JSON Lines stream; :meth:`write_batch` flushes and fsyncs."""

    def __init__(self, path: Path, fresh: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.f = open(path, "w" if fresh else "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        os.chmod(path, FILE_MODE)

    def write_batch(self, records: Sequence[dict[str, Any]]) -> None:
        for rec in records:
            self.f.write(dumps(rec) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def shard_files(out: Path) -> list[Path]:
    """Per-rank shard files of ``out`` left by a (possibly interrupted) multi-process run."""
    if not out.parent.is_dir():
        return []
    return sorted(p for p in out.parent.glob(out.name + ".rank*.part") if _SHARD_RE.search(p.name))


def existing_records(out: Path, errors: Path | None) -> list[dict[str, Any]]:
    """Records already written: the error file (if separate), the output and any shard files."""
    recs = read_records(errors) if errors is not None else []
    recs += read_records(out, repair=True)
    for shard in shard_files(out):
        recs += read_records(shard, repair=True)
    return recs


def latest(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per qid: a prediction beats an error; otherwise the later record wins."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        q = qid_of(rec)
        old = out.get(q)
        if old is not None and not is_error(old) and is_error(rec):
            continue
        out[q] = rec
    return out


def compact(out: Path, order: dict[str, int], errors: Path | None) -> dict[str, dict[str, Any]]:
    """Merge ``out`` + shard files (+ a separate error file) into ``out`` in annotation order, atomically.

    With ``errors`` set (a submission that must hold valid entries only) error records go there. Shard files
    are removed afterwards. Returns the records by qid."""
    shards = shard_files(out)
    by_qid = latest(existing_records(out, errors))
    big = len(order)
    ranked = sorted(by_qid.values(), key=lambda r: (order.get(qid_of(r), big), qid_of(r) if qid_of(r) not in order else ""))
    if errors is None:
        atomic_write_lines(out, ranked)
    else:
        atomic_write_lines(out, [r for r in ranked if not is_error(r)])
        errs = [r for r in ranked if is_error(r)]
        if errs:
            atomic_write_lines(errors, errs)
        elif errors.exists():
            errors.unlink()
    for shard in shards:
        shard.unlink(missing_ok=True)
    return by_qid
