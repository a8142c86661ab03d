"""``sevila synth needleqa``: generate the NeedleQA video-QA set (videos, NExT-QA-style csv, QVHighlights-style
spans, README) from a seed; the files are identical for the same seed and options (``docs/needleqa.md``)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sevila_tools.errors import InputError
from sevila_tools.synth.encode import write_mp4
from sevila_tools.synth.render import FrameRenderer
from sevila_tools.synth.world import MIN_FRAMES, NEXTQA_TYPE, NUM_OPTIONS, VideoPlan, plan_video

SPLITS = ("train", "val", "test")
CSV_HEADER = ("video", "frame_count", "width", "height", "question", "answer", "qid", "type",
              *(f"a{i}" for i in range(NUM_OPTIONS)), "template", "event_start", "event_end")
MARKER = "generator: sevila synth needleqa"
#: the 2-second clips of QVHighlights' relevant_clip_ids / saliency_scores
CLIP_SECONDS = 2.0


def _cli(**meta: Any) -> dict[str, Any]:
    return {"cli": meta}


class NeedleQAConfig(BaseModel):
    """What ``sevila synth needleqa`` generates."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Output folder (created; must be empty unless --overwrite).",
                      json_schema_extra=_cli(flags=["--out", "-O"], metavar="DIR"))
    videos: int = Field(100, ge=1, le=100_000, description="Number of videos (one question each).",
                        json_schema_extra=_cli(metavar="N"))
    seed: int = Field(0, ge=0, description="Seed: the same seed and options give identical files.",
                      json_schema_extra=_cli(metavar="S"))
    duration: float = Field(20.0, gt=0, le=3600, description="Length of every video in seconds.",
                            json_schema_extra=_cli(metavar="SECONDS"))
    size: str = Field("224x224", description="Frame size WIDTHxHEIGHT (even numbers).",
                      json_schema_extra=_cli(metavar="SIZE"))
    fps: float = Field(8.0, gt=0, le=60, description="Frames per second.", json_schema_extra=_cli(metavar="FPS"))
    splits: str = Field("0.8,0.1,0.1", description="Fractions of the videos in train,val,test.",
                        json_schema_extra=_cli(metavar="T,V,T"))
    overwrite: bool = Field(False, description="Replace an earlier needleqa generation in --out.")

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        parts = value.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"size must look like 224x224, got {value!r}")
        w, h = (int(p) for p in parts)
        if not (64 <= w <= 1920 and 64 <= h <= 1920) or w % 2 or h % 2:
            raise ValueError(f"size must be even and between 64 and 1920 on each side, got {value!r}")
        return f"{w}x{h}"

    @field_validator("splits")
    @classmethod
    def _splits(cls, value: str) -> str:
        try:
            parts = [float(p) for p in value.split(",")]
        except ValueError:
            raise ValueError(f"splits must be three fractions like 0.8,0.1,0.1, got {value!r}") from None
        if len(parts) != 3 or any(p < 0 for p in parts) or not math.isclose(sum(parts), 1.0, abs_tol=1e-6):
            raise ValueError(f"splits must be three fractions summing to 1, got {value!r}")
        return ",".join(f"{p:g}" for p in parts)

    @model_validator(mode="after")
    def _frames(self) -> NeedleQAConfig:
        if self.num_frames < MIN_FRAMES:
            raise ValueError(f"duration x fps gives {self.num_frames} frames; needleqa needs at least "
                             f"{MIN_FRAMES} (e.g. --duration 20 --fps 8)")
        return self

    @property
    def num_frames(self) -> int:
        return int(round(self.duration * self.fps))

    @property
    def width(self) -> int:
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.split("x")[1])

    def split_counts(self) -> dict[str, int]:
        """Videos per split: train and val rounded, test the rest."""
        fr = [float(p) for p in self.splits.split(",")]
        train = int(round(fr[0] * self.videos))
        val = min(int(round(fr[1] * self.videos)), self.videos - train)
        return {"train": train, "val": val, "test": self.videos - train - val}


class NeedleQASummary(BaseModel):
    """What a generation wrote (``--json`` prints it)."""

    out: str
    seed: int
    videos: int
    questions: dict[str, int] = Field(description="Questions per split.")
    spans: dict[str, int] = Field(description="Span queries per split (one per event).")
    frames_per_video: int
    fps: float
    size: str
    duration: float
    files: list[str] = Field(description="Annotation files, relative to out.")
    elapsed_s: float


def video_id(seed: int, index: int) -> str:
    """Name of video ``index`` of a generation (seed included, so two generations never share names)."""
    return f"nq{seed}_{index:05d}"


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty folder without ``overwrite``; with it, remove only an earlier generation."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, expected a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"--out {out} is not empty; pass --overwrite to replace an earlier needleqa set")
        readme = out / "README.md"
        if not (readme.is_file() and MARKER in readme.read_text(encoding="utf-8", errors="replace")):
            raise InputError(f"--out {out} is not empty and holds no needleqa set; refusing to overwrite it")
        for child in ("videos", "annotations"):
            shutil.rmtree(out / child, ignore_errors=True)
        readme.unlink()
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)


def csv_row(vid: str, plan: VideoPlan) -> dict[str, Any]:
    """One NExT-QA-style row (question without ``?``, options without ``.``: the readers add them)."""
    q, event = plan.question, plan.target_event
    row: dict[str, Any] = {"video": vid, "frame_count": plan.num_frames, "width": plan.width,
                           "height": plan.height, "question": q.text, "answer": q.answer, "qid": 0,
                           "type": NEXTQA_TYPE[q.template], "template": q.template}
    row.update({f"a{i}": opt for i, opt in enumerate(q.options)})
    start, end = event.window(plan.fps)
    row.update(event_start=f"{start:g}", event_end=f"{end:g}")
    return row


def span_lines(vid: str, plan: VideoPlan, first_qid: int) -> list[dict[str, Any]]:
    """QVHighlights release lines, one per event (caption query, relevant window, 2-s clips scored 4)."""
    duration = round(plan.num_frames / plan.fps, 6)
    lines = []
    for k, event in enumerate(plan.events):
        start, end = event.window(plan.fps)
        clips = [i for i in range(int(math.ceil(duration / CLIP_SECONDS)))
                 if i * CLIP_SECONDS <= end and (i + 1) * CLIP_SECONDS > start]
        lines.append({"qid": first_qid + k, "query": event.sprite.caption(), "duration": duration, "vid": vid,
                      "relevant_windows": [[start, end]], "relevant_clip_ids": clips,
                      "saliency_scores": [[4, 4, 4] for _ in clips]})
    return lines


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_annotations(out: Path, split: str, rows: list[dict[str, Any]], spans: list[dict[str, Any]]) -> None:
    """``annotations/<split>.csv`` and ``annotations/spans_<split>.jsonl``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_HEADER), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_text(out / "annotations" / f"{split}.csv", buf.getvalue())
    _write_text(out / "annotations" / f"spans_{split}.jsonl", "".join(json.dumps(s) + "\n" for s in spans))


class SynthConfig(NeedleQAConfig):
    """``sevila synth GENERATOR``: the generator's name and its options (today: needleqa)."""

    generator: Literal["needleqa"] = Field(description="What to generate: needleqa.",
                                           json_schema_extra=_cli(argument=True, metavar="GENERATOR"))


def run_synth(cfg: SynthConfig, *, progress: bool = True,
              on_status: Callable[[str], None] | None = None) -> NeedleQASummary:
    """Run the generator ``cfg.generator`` names."""
    return run_needleqa(NeedleQAConfig(**cfg.model_dump(exclude={"generator"})), progress=progress,
                        on_status=on_status)


def run_needleqa(cfg: NeedleQAConfig, *, progress: bool = True,
                 on_status: Callable[[str], None] | None = None) -> NeedleQASummary:
    """Generate the set: every video (h264 mp4), then the annotations of each split, then the README."""
    from sevila_tools.progress import make_run_progress

    t0 = time.perf_counter()
    prepare_out(cfg.out, cfg.overwrite)
    counts = cfg.split_counts()
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    spans: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    bounds = [("train", counts["train"]), ("val", counts["train"] + counts["val"]), ("test", cfg.videos)]
    with make_run_progress(progress, unit="videos") as bar:
        task = bar.add_task("needleqa videos", total=cfg.videos)
        for index in range(cfg.videos):
            split = next(s for s, end in bounds if index < end)
            vid = video_id(cfg.seed, index)
            plan = plan_video(cfg.seed, index, cfg.num_frames, cfg.fps, cfg.width, cfg.height)
            render = FrameRenderer(plan)
            write_mp4(cfg.out / "videos" / f"{vid}.mp4", (render(i) for i in range(plan.num_frames)),
                      cfg.fps, cfg.width, cfg.height)
            rows[split].append(csv_row(vid, plan))
            spans[split].extend(span_lines(vid, plan, sum(len(v) for v in spans.values())))
            bar.update(task, advance=1)
    files = []
    for split in SPLITS:
        write_annotations(cfg.out, split, rows[split], spans[split])
        files += [f"annotations/{split}.csv", f"annotations/spans_{split}.jsonl"]
    from sevila_tools.synth.readme import readme_text

    _write_text(cfg.out / "README.md", readme_text(cfg, counts))
    if on_status:
        on_status(f"wrote {cfg.videos} videos and their annotations to {cfg.out}")
    return NeedleQASummary(
        out=str(cfg.out), seed=cfg.seed, videos=cfg.videos, questions={s: len(rows[s]) for s in SPLITS},
        spans={s: len(spans[s]) for s in SPLITS}, frames_per_video=cfg.num_frames, fps=cfg.fps, size=cfg.size,
        duration=cfg.duration, files=[*files, "README.md"], elapsed_s=round(time.perf_counter() - t0, 3),
    )
