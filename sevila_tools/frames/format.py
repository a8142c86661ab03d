"""The frame-index file ``frames.jsonl``: one record per question, what ``sevila select`` writes and every
other route reads (``docs/frames.md``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sevila_tools.errors import InputError
from sevila_tools.files import atomic_write_text

#: the value of every record's ``format`` field (bumped when a field changes meaning)
FORMAT = "sevila-frames/1"
FRAMES_NAME = "frames.jsonl"


class Candidates(BaseModel):
    """Every candidate frame the selector scored (only selectors that score candidates fill this)."""

    model_config = ConfigDict(extra="forbid")

    native_indices: list[int] | None = Field(None, description="Frame numbers in the video file.")
    timestamps_s: list[float] | None = Field(None, description="Times of the candidates, seconds.")
    scores: list[float] = Field(description="The selector's score of each candidate (higher is better).")


class Provenance(BaseModel):
    """Where a record came from: the model that selected it, or the file it was converted from."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="SeViLA model id or folder the selection ran on.")
    checkpoint: str | None = Field(None, description="SeViLA checkpoint argument (file, hub reference, none).")
    checkpoint_sha256: str | None = Field(None, description="SHA-256 of the checkpoint file, when a file.")
    toolkit_version: str | None = Field(None, description="sevila-tools version that wrote the record.")
    selector_config: dict[str, Any] | None = Field(None, description="The selector's full configuration.")
    source_format: str | None = Field(None, description="Format the record was converted from (bolt, aks...).")
    source_file: str | None = Field(None, description="File the record was converted from.")


def _sorted(values: Sequence[float]) -> bool:
    return all(a <= b for a, b in zip(values, values[1:], strict=False))


class FrameRecord(BaseModel):
    """The keyframes of one question: native frame numbers and times in temporal order, with scores."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["sevila-frames/1"] = Field(FORMAT, description="Format name and version.")
    dataset: str = Field(min_length=1, description="Dataset the question ids belong to (nextqa, star...).")
    question_id: str = Field(min_length=1, description="The dataset's question id, as sevila eval names it.")
    video: str = Field(description="The dataset's video id.")
    video_path: str | None = Field(None, description="The video file the frames were read from.")
    question: str | None = Field(None, description="The question text.")
    start_s: float | None = Field(None, description="Start of the question's window, seconds (none: video start).")
    end_s: float | None = Field(None, description="End of the question's window, seconds (none: video end).")
    selector: str = Field(min_length=1, description="Selector that chose the frames (or the source project).")
    k: int = Field(ge=1, description="Number of keyframes.")
    timestamps_s: list[float] | None = Field(None, description="Keyframe times, seconds, ascending.")
    native_indices: list[int] | None = Field(None, description="Keyframe frame numbers in the file, ascending.")
    scores: list[float | None] | None = Field(None, description="The selector's score of each keyframe.")
    candidates: Candidates | None = Field(None, description="All scored candidates (selectors that score them).")
    fps: float | None = Field(None, gt=0, description="Frame rate of the video file.")
    num_frames: int | None = Field(None, ge=1, description="Frames in the video file.")
    provenance: Provenance = Field(default_factory=Provenance, description="Model or source of the record.")

    @model_validator(mode="after")
    def _consistent(self) -> FrameRecord:
        if self.timestamps_s is None and self.native_indices is None:
            raise ValueError("needs timestamps_s or native_indices")
        for name in ("timestamps_s", "native_indices", "scores"):
            values = getattr(self, name)
            if values is not None and len(values) != self.k:
                raise ValueError(f"{name} holds {len(values)} values, k is {self.k}")
        if self.timestamps_s is not None and (not _sorted(self.timestamps_s) or min(self.timestamps_s) < 0):
            raise ValueError("timestamps_s must be non-negative and in temporal order")
        if self.native_indices is not None:
            if not _sorted(self.native_indices) or min(self.native_indices) < 0:
                raise ValueError("native_indices must be non-negative and in temporal order")
            if self.num_frames is not None and max(self.native_indices) >= self.num_frames:
                raise ValueError(f"native index {max(self.native_indices)} is past the video's {self.num_frames} frames")
        return self


class ErrorRecord(BaseModel):
    """A question whose video could not be used: no frames, the reason in one line."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["sevila-frames/1"] = Field(FORMAT, description="Format name and version.")
    dataset: str = Field(min_length=1, description="Dataset the question id belongs to.")
    question_id: str = Field(min_length=1, description="The dataset's question id.")
    video: str = Field(description="The dataset's video id.")
    error: str = Field(min_length=1, description="Why no frames were selected, in one line.")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one line of ``frames.jsonl`` (a frames record or an error record)."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(FrameRecord | ErrorRecord).json_schema()
    for name in ("FrameRecord", "ErrorRecord"):
        schema["$defs"][name]["required"] = ["format", *schema["$defs"][name]["required"]]
    schema["$defs"]["FrameRecord"]["anyOf"] = [  # frame numbers or times (or both)
        {"required": [key], "properties": {key: {"type": "array"}}} for key in ("native_indices", "timestamps_s")
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sevila-tools.invalid/schemas/sevila-frames-1.json",
        "title": "sevila frames.jsonl line (sevila-frames/1)",
        "description": "One question's keyframes (or an error record); see docs/frames.md.",
        **schema,
    }


SCHEMA_FILE = Path(__file__).with_name("frames.schema.json")


def shipped_schema() -> dict[str, Any]:
    """The JSON Schema that ships with the package (``sevila_tools/frames/frames.schema.json``)."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def dump_record(rec: FrameRecord | ErrorRecord) -> dict[str, Any]:
    """A record as the JSON object written to the file (fields that are ``None`` left out)."""
    return rec.model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class FramesFile:
    """A parsed ``frames.jsonl``: records by question id, error records, the datasets named."""

    path: Path
    records: dict[str, FrameRecord] = field(default_factory=dict)
    errors: dict[str, ErrorRecord] = field(default_factory=dict)

    @property
    def datasets(self) -> list[str]:
        return sorted({r.dataset for r in self.records.values()} | {e.dataset for e in self.errors.values()})

    def ordered(self) -> list[FrameRecord]:
        """Frame records in file order."""
        return list(self.records.values())

    def check_dataset(self, dataset: str) -> None:
        """One-line error when the file holds frames of another dataset."""
        others = [d for d in self.datasets if d != dataset]
        if others:
            raise InputError(f"{self.path} holds frames for {', '.join(others)}, not {dataset}")

    def check_covers(self, question_ids: Iterable[str]) -> None:
        """One-line error naming the questions the file has no frames for (or only an error record)."""
        ids = list(question_ids)
        missing = [q for q in ids if q not in self.records]
        if missing:
            failed = sum(1 for q in missing if q in self.errors)
            note = f" ({failed} of them are error records)" if failed else ""
            raise InputError(f"{self.path} has no frames for {len(missing)} of {len(ids)} questions{note} "
                             f"(first: {', '.join(missing[:3])})")


def _where(path: Path, lineno: int, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{path}:{lineno}: not a {FORMAT} record ({loc + ': ' if loc else ''}{msg})"


def parse_line(data: dict[str, Any], path: Path, lineno: int) -> FrameRecord | ErrorRecord:
    """One decoded line as a record; a one-line :class:`InputError` naming ``file:line`` otherwise."""
    cls = ErrorRecord if isinstance(data, dict) and "error" in data else FrameRecord
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise InputError(_where(path, lineno, exc)) from None


def read_frames_file(path: str | Path) -> FramesFile:
    """Read ``frames.jsonl``; a file in another project's format gets an error saying how to convert it.

    A later record of a question replaces an earlier one, and a frames record beats an error record."""
    from .sniff import sniff_format

    p = Path(path)
    if not p.is_file():
        raise InputError(f"frames file not found: {p}")
    kind = sniff_format(p)
    if kind != "sevila":
        hint = f"it looks like a {kind} file; convert it first: sevila convert-frames {p} --from {kind} ..." \
            if kind else "expected JSON Lines with one record per question (docs/frames.md)"
        raise InputError(f"{p} is not a {FORMAT} file ({hint})")
    out = FramesFile(p)
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                raise InputError(f"{p}:{lineno}: not a JSON line") from None
            rec = parse_line(data, p, lineno)
            if isinstance(rec, ErrorRecord):
                if rec.question_id not in out.records:
                    out.errors[rec.question_id] = rec
            else:
                out.errors.pop(rec.question_id, None)
                out.records[rec.question_id] = rec
    return out


def write_frames_file(path: str | Path, records: Iterable[FrameRecord | ErrorRecord]) -> int:
    """Write records as ``frames.jsonl`` (atomically); returns how many were written."""
    lines = [json.dumps(dump_record(r), ensure_ascii=False) + "\n" for r in records]
    atomic_write_text(path, "".join(lines))
    return len(lines)
