"""``sevila convert-frames``: ``frames.jsonl`` to and from the files of BOLT, AKS, TSPO and VideoITG
(``docs/frames.md``). The field mappings live in :mod:`sevila_tools.frames.convert`; this module reads and writes
the files and brings the annotation order where a format is positional."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sevila_tools.errors import InputError
from sevila_tools.frames import (
    FORMATS,
    FrameRecord,
    Question,
    fill_with_fps,
    from_aks,
    from_bolt,
    from_tspo,
    from_videoitg,
    read_frames_file,
    sniff_format,
    to_aks,
    to_bolt,
    to_tspo,
    to_videoitg,
    write_frames_file,
)
from sevila_tools.schemas import CLI


def _check_format(value: str | None) -> str | None:
    if value is not None and value not in FORMATS:  # an InputError passes through pydantic as is: one plain line
        raise InputError(f"unknown format {value!r}; choose one of: {', '.join(FORMATS)}")
    return value


class ConvertFramesConfig(BaseModel):
    """One conversion: ``to_format`` (our file -> theirs) or ``from_format`` (theirs -> our file)."""

    model_config = ConfigDict(extra="forbid")

    file: Path = Field(description="frames.jsonl (with --to) or their file (with --from).",
                       json_schema_extra=CLI(argument=True, metavar="FILE"))
    out: Path = Field(description="The converted file (a folder for AKS, and for VideoITG unless it ends .jsonl).",
                      json_schema_extra=CLI(flags=["--out"], metavar="PATH"))
    to_format: str | None = Field(None, description="Write this format: aks, bolt, tspo or videoitg.",
                                  json_schema_extra=CLI(flags=["--to"], metavar="FORMAT"))
    from_format: str | None = Field(None, description="Read this format into frames.jsonl.",
                                    json_schema_extra=CLI(flags=["--from"], metavar="FORMAT"))
    dataset: str | None = Field(None, description="Dataset of the question ids (required with --from).",
                                json_schema_extra=CLI(flags=["--dataset", "-d"], metavar="NAME"))
    annotations: Path | None = Field(None, description="Annotation file: the question order of AKS and VideoITG.",
                                     json_schema_extra=CLI(flags=["--annotations", "-a"], metavar="FILE"))
    video_map: Path | None = Field(None, description="{video id: path} JSON of the annotations (NExT-QA).",
                                   json_schema_extra=CLI(metavar="FILE"))
    video_ext: str = Field(".mp4", description="Extension appended to video stems.",
                           json_schema_extra=CLI(metavar="EXT"))
    fps: float | None = Field(None, gt=0, description="Frame rate that turns frame numbers into times and back.",
                              json_schema_extra=CLI(metavar="X"))
    keyframes: int | None = Field(None, ge=1, description="VideoITG: keep the first K frames of each ranked list.",
                                  json_schema_extra=CLI(flags=["--keyframes", "-k"], metavar="N"))
    overwrite: bool = Field(False, description="Replace --out when it exists.",
                            json_schema_extra=CLI(flags=["--overwrite"]))

    @field_validator("to_format", "from_format")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return _check_format(value)

    @model_validator(mode="after")
    def _one_direction(self) -> ConvertFramesConfig:
        if (self.to_format is None) == (self.from_format is None):
            raise InputError("give exactly one of --to FORMAT or --from FORMAT")
        return self

    @property
    def direction(self) -> Literal["to", "from"]:
        return "to" if self.to_format is not None else "from"

    @property
    def fmt(self) -> str:
        return str(self.to_format or self.from_format)


class ConvertFramesSummary(BaseModel):
    """What a conversion did (``--json`` prints it)."""

    direction: Literal["to", "from"]
    format: str
    input: str
    outputs: list[str] = Field(description="Files written.")
    records: int = Field(description="Questions converted.")
    skipped_errors: int = Field(0, description="Error records of frames.jsonl left out (they have no frames).")
    notes: list[str] = Field(default_factory=list)


def _questions(cfg: ConvertFramesConfig, dataset: str | None) -> list[Question]:
    """The annotation file's questions in order (with the fields TSPO files carry)."""
    from .datasets import get_dataset

    if cfg.annotations is None:
        raise InputError(f"{cfg.fmt} files are positional (entry i is the annotation file's i-th question): "
                         "pass --annotations and --dataset")
    if dataset is None:
        raise InputError("pass --dataset with --annotations")
    samples = get_dataset(dataset).load(cfg.annotations, None, cfg.video_map, cfg.video_ext)
    return [Question(s.qid, s.video_id, s.question,
                     {"options": list(s.options), "answer": s.answer, "qtype": s.qtype}) for s in samples]


def _writable(path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; pass --overwrite to replace it")
    return path


def _dump_json(path: Path, data: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(path)


def _export(cfg: ConvertFramesConfig) -> ConvertFramesSummary:
    frames = read_frames_file(cfg.file)
    dataset = cfg.dataset
    if dataset is not None:
        frames.check_dataset(dataset)
    elif len(frames.datasets) == 1:
        dataset = frames.datasets[0]
    records = [fill_with_fps(r, cfg.fps) for r in frames.ordered()]
    out, outputs = _writable(cfg.out, cfg.overwrite), []
    if cfg.fmt == "bolt":
        outputs.append(_dump_json(out, to_bolt(records)))
    elif cfg.fmt == "tspo":
        fields = {q.question_id: q.fields or {} for q in _questions(cfg, dataset)} if cfg.annotations else None
        outputs.append(_dump_json(out, to_tspo(records, fields)))
    elif cfg.fmt == "aks":
        for name, data in to_aks(records, _questions(cfg, dataset)).items():
            outputs.append(_dump_json(out / name, data))
    else:
        rows = to_videoitg(records, _questions(cfg, dataset))
        if out.suffix == ".jsonl":
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            outputs.append(str(out))
        else:
            outputs += [_dump_json(out / f"{r['doc_id']}.json", r) for r in rows]
    notes = [f"{len(frames.errors)} error records have no frames and were left out"] if frames.errors else []
    return ConvertFramesSummary(direction="to", format=cfg.fmt, input=str(cfg.file), outputs=outputs,
                                records=len(records), skipped_errors=len(frames.errors), notes=notes)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None


def _videoitg_rows(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        return [_read_json(p) for p in sorted(path.glob("*.json"))]
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise InputError(f"{path}:{lineno}: not a JSON line") from None
    return rows


def _import(cfg: ConvertFramesConfig) -> ConvertFramesSummary:
    if cfg.dataset is None:
        raise InputError("--from needs --dataset (the dataset its question ids belong to)")
    if not cfg.file.exists():
        raise InputError(f"file not found: {cfg.file}")
    kind = sniff_format(cfg.file)
    if kind is not None and kind != cfg.fmt:
        raise InputError(f"{cfg.file} looks like a {kind} file, not {cfg.fmt}")
    out, p, notes = _writable(cfg.out, cfg.overwrite), cfg.file, []
    if cfg.fmt == "bolt":
        records = from_bolt(_read_json(p), cfg.dataset, p)
    elif cfg.fmt == "tspo":
        records = from_tspo(_read_json(p), cfg.dataset, p)
    elif cfg.fmt == "aks":
        scores, frames = p.with_name("scores.json"), p.with_name("frames.json")
        beside = scores.is_file() and frames.is_file() and p.name not in ("scores.json", "frames.json")
        if beside:
            notes.append(f"candidate scores read from {scores} and {frames}")
        records = from_aks(_read_json(p), _questions(cfg, cfg.dataset), cfg.dataset, p,
                           _read_json(scores) if beside else None, _read_json(frames) if beside else None)
    else:
        records = from_videoitg(_videoitg_rows(p), _questions(cfg, cfg.dataset), cfg.dataset, p, cfg.keyframes)
    records = _unique([fill_with_fps(r, cfg.fps) for r in records], p)
    write_frames_file(out, records)
    if cfg.fps is None and any(r.timestamps_s is None or r.native_indices is None for r in records):
        notes.append("without --fps, times or frame numbers stay empty; readers fill them from each video")
    return ConvertFramesSummary(direction="from", format=cfg.fmt, input=str(p), outputs=[str(out)],
                                records=len(records), notes=notes)


def _unique(records: list[FrameRecord], path: Path) -> list[FrameRecord]:
    seen: set[str] = set()
    for r in records:
        if r.question_id in seen:
            raise InputError(f"{path} names question {r.question_id} twice")
        seen.add(r.question_id)
    return records


def run_convert_frames(config: ConvertFramesConfig | dict[str, Any]) -> ConvertFramesSummary:
    """Convert one frame-index file (``docs/frames.md``, "Formats").

    Raises:
        InputError: an unknown format name, a file in another format, a positional format without its
            annotation file, questions missing from the file, an output that exists without ``overwrite``.
    """
    cfg = config if isinstance(config, ConvertFramesConfig) else ConvertFramesConfig.model_validate(config)
    return _export(cfg) if cfg.direction == "to" else _import(cfg)


__all__ = ["ConvertFramesConfig", "ConvertFramesSummary", "run_convert_frames"]
