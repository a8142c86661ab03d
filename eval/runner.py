"""``sevila eval``: annotations + videos -> streamed, resumable predictions -> official metrics (``docs/eval.md``)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sevila_tools.encoding import EncodedVideo, FrameSpec
from sevila_tools.errors import InputError, SevilaError, VideoError
from sevila_tools.files import atomic_write_text
from sevila_tools.pipeline import Query
from sevila_tools.schemas import (
    DEFAULT_ANSWERER,
    DEFAULT_KEYFRAMES,
    DEFAULT_SELECTOR,
    ModelOptions,
    cli_flags,
    weights_notice,
)

from .datasets import DatasetSpec, Sample, get_dataset, preflight
from .distributed import Dist, distributed, rank_device
from .moments import SpanConfig
from .predict import choice_record, error_record, moment_record, moments
from .records import (
    ERRORS_NAME,
    PREDICTIONS_NAME,
    SHARD_SUFFIX,
    Writer,
    compact,
    existing_records,
    is_error,
    latest,
    qid_of,
    read_records,
    shard_files,
)
from .session import RunLog

log = logging.getLogger("sevila_tools.eval")

SETTINGS_NAME = "settings.json"
SUMMARY_NAME = "summary.json"
LOG_NAME = "log.txt"


class RunOptions(ModelOptions):
    """What every dataset run (``sevila eval``, ``sevila ablate``) is configured with: data, output, model,
    decoding and throughput settings."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Dataset name.", json_schema_extra=cli_flags("--dataset", "-d"))
    annotations: Path = Field(description="Official annotation file or SeViLA JSON.",
                              json_schema_extra=cli_flags("--annotations", "-a"))
    out: Path = Field(description="Run folder: predictions.jsonl, summary.json, log.txt.")
    videos: Path | None = Field(None, description="Folder holding the videos.")
    video_map: Path | None = Field(None, description="{video id: relative path} JSON (NExT-QA map file).")
    video_ext: str = Field(".mp4", description="Extension appended to video stems.", json_schema_extra=cli_flags(
        metavar="EXT"))
    decoding: Literal["faithful", "teacher_forced"] = Field("faithful", description="Letter decoding rule.")
    limit: int | None = Field(default=None, ge=1, description="Only the first N samples.")
    resume: bool = Field(False, description="Continue the run in --out (same settings only).",
                         json_schema_extra=cli_flags("--resume"))
    overwrite: bool = Field(False, description="Replace what --out already holds.",
                            json_schema_extra=cli_flags("--overwrite"))
    retry_errors: bool = Field(False, description="With --resume, run the error records again.",
                               json_schema_extra=cli_flags("--retry-errors"))
    skip_missing: bool = Field(False, description="Go on without missing or unreadable videos.",
                               json_schema_extra=cli_flags("--skip-missing"))
    batch_size: int = Field(default=8, ge=1, le=1024, description="Questions per model batch.",
                            json_schema_extra=cli_flags("--batch-size", "-b"))
    cache: bool = Field(True, description="Read and write the feature cache.")
    cache_dir: Path | None = Field(None, description="Feature cache folder (default: $SEVILA_CACHE_DIR or "
                                   "~/.cache/sevila_tools/features).")
    prefetch: int = Field(default=2, ge=0, le=64, description="Videos decoded ahead of the model.")
    decode_workers: int = Field(default=0, ge=0, le=64, description="Decode in this many processes (0: a thread).")
    seed: int = Field(0, description="Seed (recorded; used by random selectors).")


class SelectionOptions(RunOptions):
    """A dataset run with one keyframe selector (``sevila eval``, ``sevila select``): the selector, its options,
    and how many candidate frames and keyframes."""

    selector: str = Field(DEFAULT_SELECTOR, description="Keyframe selector.", json_schema_extra=cli_flags(
        "--selector", "-s"))
    selector_options: dict[str, Any] = Field(default_factory=dict, description="Selector options by key.")
    frames: int | None = Field(default=None, ge=1, le=256, description="Candidate frames (default: the "
                               "dataset's, 32 or 75).", json_schema_extra=cli_flags("--frames", "-n"))
    keyframes: int = Field(default=DEFAULT_KEYFRAMES, ge=1, le=64, description="Keyframes kept per question.",
                           json_schema_extra=cli_flags("--keyframes", "-k"))

    @model_validator(mode="after")
    def _check_selection(self) -> SelectionOptions:
        self.dataset = self.spec.name
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        if not self.is_moments and self.keyframes > self.num_frames:
            raise ValueError(f"keyframes ({self.keyframes}) exceeds frames ({self.num_frames})")
        return self

    @property
    def spec(self) -> DatasetSpec:
        return get_dataset(self.dataset)

    def selector_names(self) -> list[str]:
        """The selectors this run uses (the selector options given are checked against them)."""
        return [self.selector]

    @property
    def num_frames(self) -> int:
        """Candidate frames per video (the dataset's default when ``frames`` is unset)."""
        return self.frames if self.frames is not None else self.spec.default_frames

    @property
    def is_moments(self) -> bool:
        return self.spec.task == "moments"


class EvalConfig(SelectionOptions):
    """Everything that defines one evaluation run (recorded in ``summary.json``).

    ``out`` is the run folder (``predictions.jsonl``, ``errors.jsonl`` for moment runs, ``settings.json``,
    ``summary.json``, ``log.txt``). ``frames`` defaults to the dataset's (32; 75 for QVHighlights). ``limit``
    keeps the first N samples of the annotation file. ``cache_dir=None``: ``$SEVILA_CACHE_DIR`` or
    ``~/.cache/sevila_tools/features``. ``selector_options``: flat options, each selector takes what it declares.
    """

    answerer: str = Field(DEFAULT_ANSWERER, description="Answer strategy.")
    span: SpanConfig = Field(default_factory=SpanConfig, description="Moment windows from frame decisions.",
                             json_schema_extra=cli_flags(fields={
                                 "span_threshold": "Moments: longest run of 'no' frames inside one window."}))

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if self.is_moments and self.selector != DEFAULT_SELECTOR:
            raise ValueError(f"{self.dataset} moments come from the Localizer's per-frame scores; leave --selector")
        return self

    @property
    def predictions_path(self) -> Path:
        return self.out / PREDICTIONS_NAME

    @property
    def errors_path(self) -> Path | None:
        """Where error records go for moment runs (a submission must hold valid lines only)."""
        return self.out / ERRORS_NAME if self.is_moments else None


class EvalSummary(BaseModel):
    """Outcome of :func:`run_eval` (the CLI prints it; ``--json`` prints it as one object)."""

    dataset: str
    out: str
    predictions_file: str
    errors_file: str | None = Field(default=None, description="Moment runs: where error records were moved.")
    samples: int = Field(description="Samples selected (after --limit).")
    runnable: int = Field(description="Samples whose video passed the pre-flight check.")
    skipped_missing: int = 0
    missing_videos: list[str] = Field(default_factory=list, description="First missing/unreadable videos.")
    empty_windows: int = Field(0, description="Questions with an empty or reversed window (kept, see docs).")
    resumed: int = Field(0, description="Samples already in the output (skipped by --resume).")
    processed: int = Field(0, description="Samples run by this invocation (all processes).")
    predictions: int = Field(0, description="Records with a prediction in the final output.")
    errors: int = Field(0, description="Error records in the final output.")
    errors_this_run: int = 0
    first_errors: list[dict[str, str]] = Field(default_factory=list)
    truncated_prompts: int = Field(0, description="Questions whose prompt hit the 77-token limit.")
    elapsed_s: float = 0.0
    load_s: float = 0.0
    samples_per_s: float | None = None
    batch_size: int = 1
    world_size: int = 1
    cache: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    metrics_note: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    notice: str | None = None
    is_main_process: bool = True

    def overview(self) -> dict[str, str]:
        """The summary as labelled lines (what ``sevila eval`` prints above the metrics)."""
        s, c, cache = self, self.config, self.cache
        rate = "-" if s.samples_per_s is None else f"{s.samples_per_s:.2f} samples/s"
        keys = f", {c.get('keyframes')} keyframes, {c.get('decoding')}, {c.get('answerer')}" if c.get("keyframes") else ""
        hits = f"{cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses, {cache.get('writes', 0)} written"
        return {
            "output": s.predictions_file + (f" (errors: {s.errors_file})" if s.errors_file else ""),
            "samples": f"{s.samples} selected, {s.runnable} runnable, {s.skipped_missing} skipped (missing video), "
                       f"{s.resumed} resumed",
            "this run": f"{s.processed} processed in {s.elapsed_s:.1f} s ({rate}, batch {s.batch_size}, "
                        f"{s.world_size} process(es))",
            "records": f"{s.predictions} predictions, {s.errors} errors ({s.errors_this_run} this run)",
            "feature cache": f"{hits} ({cache.get('dir')})" if cache.get("enabled")
            else f"off ({cache.get('decoded_videos', 0)} videos decoded)",
            "model": f"{c.get('model')} / checkpoint {c.get('checkpoint')}",
            "selector": f"{c.get('selector')} ({c.get('frames')} frames{keys})",
            "device": f"{c.get('device')}" + (f" ({c.get('gpu')})" if c.get("gpu") else "") + f", precision "
                      f"{c.get('precision')}",
            "versions": ", ".join(f"{k} {v}" for k, v in c.get("versions", {}).items() if v),
        }


# ================================================================================ batches


def video_spec(sample: Sample, n: int) -> FrameSpec:
    """The frame request of a sample (its video, window and candidate count)."""
    return FrameSpec(sample.video, n, sample.start, sample.end, empty_window="start_frame")


def group_by_video(samples: Sequence[Sample], n: int) -> list[list[Sample]]:
    """Samples grouped by (video, window), groups in order of first appearance."""
    groups: OrderedDict[FrameSpec, list[Sample]] = OrderedDict()
    for s in samples:
        groups.setdefault(video_spec(s, n), []).append(s)
    return list(groups.values())


def plan_batches(samples: Sequence[Sample], n: int, batch_size: int) -> list[list[Sample]]:
    """Canonical batches: all runnable samples grouped by video, cut into consecutive chunks, so a resumed or
    sharded run feeds the model exactly the batches of one uninterrupted run (batching changes last bits)."""
    ordered = [s for g in group_by_video(samples, n) for s in g]
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def shard_batches(batches: Sequence[list[Sample]], rank: int, world: int) -> list[list[Sample]]:
    """Contiguous block ``rank`` of ``world`` nearly equal blocks of batches."""
    if world <= 1:
        return list(batches)
    return list(batches[len(batches) * rank // world : len(batches) * (rank + 1) // world])


# ================================================================================ the run, in named steps


class EvalRun:
    """One evaluation: ``load`` -> ``check_videos`` -> ``prepare_output`` -> ``load_model`` -> ``predict`` ->
    ``finish``. :func:`run_eval` runs the steps in order. ``sevila select`` (``eval/select.py``) is a subclass
    that writes frame records instead of predictions (hooks: ``label``, ``records``, ``error_record``)."""

    label = "eval"  # progress-bar label

    def __init__(self, cfg: EvalConfig, runtime: Any, progress: bool, console: Any, say: Callable[[str], None]):
        self.cfg, self.runtime, self.progress, self.console = cfg, runtime, progress, console
        self.spec = cfg.spec
        self._say = say
        self.t_start = time.perf_counter()
        self.dist: Dist = distributed(cfg.device)
        self.bad: list[str] = []
        self.load_s = 0.0
        self.processed, self.todo = 0, 0
        self.runlog = RunLog(cfg.out / LOG_NAME, enabled=self.dist.main)

    def say(self, msg: str) -> None:
        """A status line for the user, also kept in the run folder's log."""
        self._say(msg)
        self.runlog.write(msg)

    def started(self) -> str:
        """The first log line of an invocation."""
        cfg = self.cfg
        return (f"eval {cfg.dataset}: {cfg.annotations} (videos {cfg.videos}), selector {cfg.selector}, "
                f"{cfg.num_frames} frames, {cfg.keyframes} keyframes, model {cfg.model}"
                + (", resume" if cfg.resume else ""))

    def interrupted(self) -> str:
        """The log line of a run stopped by Ctrl-C."""
        return (f"interrupted after {self.processed} of {self.todo} samples: rerun with --resume to continue")

    def finished(self, summary: EvalSummary) -> str:
        """The last log line of a completed run."""
        head = summary.metrics.get("headline") if summary.metrics else None
        score = f"; {head['metric']} {head['value']:.2f}" if head else ""
        return (f"finished in {summary.elapsed_s:.1f} s: {summary.processed} processed, {summary.resumed} resumed, "
                f"{summary.errors_this_run} errors{score}" + (f" ({summary.metrics_note})" if summary.metrics_note else ""))

    # ---------------------------------------------------------------- 1. annotations
    def load(self) -> None:
        cfg = self.cfg
        if cfg.videos is None:
            raise InputError("--videos (the folder holding the videos) is required")
        self.all_samples = self.spec.load(cfg.annotations, cfg.videos, cfg.video_map, cfg.video_ext)
        dup = [q for q, c in Counter(s.qid for s in self.all_samples).items() if c > 1]
        if dup:
            raise InputError(f"{len(dup)} duplicate question ids in {cfg.annotations} (first: {', '.join(dup[:3])})")
        self.order = {s.qid: i for i, s in enumerate(self.all_samples)}
        self.selected = self.all_samples[: cfg.limit] if cfg.limit else list(self.all_samples)
        self.empty_windows = sum(1 for s in self.selected if s.empty_window)
        if self.empty_windows:
            self.say(f"warning: {self.empty_windows} questions have an empty or reversed window; sampled at "
                     "their start frame and scored, as the official loader does")

    # ---------------------------------------------------------------- 2. pre-flight (no model yet)
    def check_videos(self) -> None:
        report = preflight(self.selected, check_readable=True)
        self.bad = list(report.missing) + list(report.unreadable)
        if self.bad:
            msg = report.summary(self.spec.missing_videos_hint(self.cfg.video_map))
            if not self.cfg.skip_missing:
                raise VideoError(f"{msg}; pass --skip-missing to evaluate the others")
            self.say(f"warning: {msg}; skipping their questions (--skip-missing)")
        bad = set(self.bad)
        self.runnable = [s for s in self.selected if s.video not in bad]
        if not self.cfg.is_moments:
            self.check_selector()

    def check_selector(self) -> None:
        """The selector's own look at the run's questions, before any model loads (``check_questions``)."""
        from sevila_tools.selectors import get_selector_class, options_for

        cfg = self.cfg
        options = options_for(cfg.selector, {"seed": cfg.seed, **cfg.selector_options})
        questions = [(s.qid, s.video_id) for s in self.runnable]
        get_selector_class(cfg.selector).check_questions(cfg.dataset, questions, cfg.keyframes, options)

    # ---------------------------------------------------------------- 3. output folder, resume
    def settings(self) -> dict[str, Any]:
        """Everything that changes a prediction; a resumed run must match it exactly."""
        from sevila_tools.selectors import options_for

        cfg = self.cfg
        keep = ["dataset", "selector", "keyframes", "decoding", "answerer", "decoder", "batch_size"]
        out: dict[str, Any] = {k: getattr(cfg, k) for k in keep}
        info = getattr(self.runtime, "info", None) or {"model": cfg.model, "checkpoint": cfg.checkpoint}
        out.update(model=info.get("model"), checkpoint=info.get("checkpoint"), frames=cfg.num_frames,
                   annotations=str(cfg.annotations.resolve()),
                   selector_options=options_for(cfg.selector, {"seed": cfg.seed, **cfg.selector_options}))
        if cfg.is_moments:
            out["span"] = cfg.span.model_dump()
        return json.loads(json.dumps(out, default=str))

    def check_settings(self, skip: tuple[str, ...] = ()) -> None:
        """With ``resume``: refuse when the folder's ``settings.json`` differs from this run's (``skip`` aside)."""
        path = self.cfg.out / SETTINGS_NAME
        if not self.cfg.resume or not path.is_file():
            return
        saved, now = json.loads(path.read_text()), self.settings()
        changed = [k for k in sorted(set(saved) | set(now)) if k not in skip and saved.get(k) != now.get(k)]
        if changed:
            parts = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
            raise InputError(f"{self.cfg.out} was written with other settings ({parts}); use another --out or "
                             "the same settings to resume")

    def prepare_output(self) -> None:
        cfg, out = self.cfg, self.cfg.predictions_path
        leftovers = [p for p in [out, *shard_files(out), cfg.errors_path] if p is not None and p.exists()]
        existing: list[dict[str, Any]] = []
        if cfg.resume:
            self.check_settings(skip=("model", "checkpoint"))  # those are known once the model is loaded
            existing = existing_records(out, cfg.errors_path)
        elif leftovers and not cfg.overwrite:
            raise InputError(f"{cfg.out} already holds predictions; pass --resume to continue or --overwrite")
        self.done = {q for q, r in latest(existing).items() if not (cfg.retry_errors and is_error(r))}
        todo = [s for s in self.runnable if s.qid not in self.done]
        self.resumed = len(self.runnable) - len(todo)
        if cfg.resume and self.dist.main:
            self.say(f"resume: {self.resumed} of {len(self.runnable)} samples already in {out}")
        if cfg.overwrite and self.dist.main:
            for p in leftovers:
                p.unlink()
        self.dist.barrier()  # every rank has read the old files before anyone writes

    # ---------------------------------------------------------------- 4. model
    def load_model(self) -> None:
        from .session import build_pipeline

        t0 = time.perf_counter()
        cfg = self.cfg
        if self.runtime is None:
            from sevila_tools.loading import load_runtime

            self.runtime = load_runtime(cfg.model, cfg.checkpoint, device=rank_device(cfg.device, self.dist),
                                        trust_checkpoint=cfg.trust_checkpoint)
        self.load_s = time.perf_counter() - t0
        self.check_settings()
        if self.dist.main:
            atomic_write_text(cfg.out / SETTINGS_NAME, json.dumps(self.settings(), indent=2) + "\n")
        self.pipeline = build_pipeline(self.runtime, cfg)
        self.n = cfg.num_frames if cfg.is_moments else self.pipeline.selector().num_candidates(
            cfg.num_frames, cfg.keyframes)

    # ---------------------------------------------------------------- 5. predictions
    def _predict_batch(self, items: list[tuple[Sample, EncodedVideo]]) -> list[dict[str, Any]]:
        cfg = self.cfg
        pairs = [(ev, Query(s.question, list(s.options), s.answer, s.qid)) for s, ev in items]
        if cfg.is_moments:
            found = moments(self.pipeline, pairs, [s.duration for s, _ in items], cfg.span)
            return [moment_record(s, m) for (s, _), m in zip(items, found, strict=True)]
        outs = self.pipeline.forward(pairs, cfg.keyframes)
        self.truncated += sum(o.answer.truncated for o in outs)
        conf = {"selector": cfg.selector, "decoding": cfg.decoding, "answerer": cfg.answerer}
        return [choice_record(s, o, conf) for (s, _), o in zip(items, outs, strict=True)]

    def _encoded(self, batches: list[list[Sample]]) -> Iterator[tuple[FrameSpec, EncodedVideo | Exception]]:
        specs = list(dict.fromkeys(video_spec(s, self.n) for b in batches for s in b))
        return self.pipeline.encoder.encode_many(specs, prefetch=self.cfg.prefetch)

    def _batch_records(self, batch: list[Sample], loaded: dict, stream: Iterator) -> list[dict[str, Any]]:
        for s in batch:
            while video_spec(s, self.n) not in loaded:
                spec, got = next(stream)
                loaded[spec] = got
        items, slots = [], []
        for s in batch:
            got = loaded[video_spec(s, self.n)]
            if isinstance(got, Exception):
                slots.append(self.error_record(s, got))
            else:
                items.append((s, got))
                slots.append(None)
        preds = iter(self._predict_batch(items) if items else [])
        return [next(preds) if slot is None else slot for slot in slots]

    def error_record(self, sample: Sample, exc: BaseException) -> dict[str, Any]:
        """The record of a question whose video failed during the run."""
        return error_record(sample, exc, self.cfg.is_moments)

    def predict(self) -> None:
        cfg, dist = self.cfg, self.dist
        batches = plan_batches(self.runnable, self.n, cfg.batch_size)
        mine = shard_batches([b for b in batches if any(s.qid not in self.done for s in b)], dist.rank, dist.world)
        out = cfg.predictions_path
        stream_path = out.with_name(out.name + SHARD_SUFFIX.format(rank=dist.rank)) if dist.world > 1 else out
        writer = Writer(stream_path, fresh=not stream_path.exists())
        self.processed, self.errors_run, self.truncated, self.failure = 0, [], 0, None
        t0 = time.perf_counter()
        try:
            self._loop(mine, writer)
        except Exception as exc:  # noqa: BLE001 - re-raised after the other ranks were told
            self.failure = exc
            if dist.world <= 1:
                raise
        finally:
            writer.close()
        self.run_s = time.perf_counter() - t0

    def _loop(self, mine: list[list[Sample]], writer: Writer) -> None:
        from sevila_tools.progress import make_run_progress

        loaded: dict[FrameSpec, Any] = {}
        remaining = Counter(video_spec(s, self.n) for b in mine for s in b)
        stream = self._encoded(mine)
        total = self.todo = sum(1 for b in mine for s in b if s.qid not in self.done)
        label = f"{self.label} {self.cfg.dataset}" + (f" [rank 0 of {self.dist.world}]" if self.dist.world > 1 else "")
        bar = make_run_progress(self.progress and self.dist.main, unit="samples")
        with bar:
            task = bar.add_task(label, total=total)
            for batch in mine:
                records = [r for s, r in zip(batch, self._batch_records(batch, loaded, stream), strict=True)
                           if s.qid not in self.done]  # the rest only keeps the batch as in an uninterrupted run
                for rec in records:
                    if is_error(rec):
                        self.errors_run.append(rec)
                        if len(self.errors_run) <= 3:
                            self.say(f"error: {qid_of(rec)}: {rec['error']}")
                writer.write_batch(records)
                for s in batch:
                    spec = video_spec(s, self.n)
                    remaining[spec] -= 1
                    if remaining[spec] == 0:
                        loaded.pop(spec, None)
                self.processed += len(records)
                bar.update(task, advance=len(records))

    # ---------------------------------------------------------------- 6. merge, score, summary
    def merge(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Every rank's statistics, and the records merged into the output file (main process) by question id;
        re-raises this rank's failure or names another rank's."""
        enc = self.pipeline.encoder
        stats = {"processed": self.processed, "run_s": self.run_s, "errors": self.errors_run[:5],
                 "n_errors": len(self.errors_run), "cache": enc.stats(), "truncated": self.truncated,
                 "failure": None if self.failure is None else f"{type(self.failure).__name__}: {self.failure}"}
        self.dist.barrier()
        gathered = self.dist.gather(stats)
        by_qid: dict[str, dict[str, Any]] = {}
        if self.dist.main:
            by_qid = compact(self.cfg.predictions_path, self.order, self.cfg.errors_path)
        self.dist.barrier()
        if self.failure is not None:
            raise self.failure
        failed = [(r, g["failure"]) for r, g in enumerate(gathered) if g["failure"]]
        if failed:
            raise SevilaError(f"rank {failed[0][0]} failed: {failed[0][1]}")
        return gathered, by_qid

    def finish(self) -> EvalSummary:
        from .session import score_run, summary_config

        gathered, by_qid = self.merge()
        summary = self._summary(gathered, summary_config(self.cfg, self.runtime, self.pipeline, self.dist.world))
        if self.dist.main:
            sel_ids = {s.qid for s in self.selected}
            summary.predictions = sum(1 for q, r in by_qid.items() if q in sel_ids and not is_error(r))
            summary.errors = sum(1 for q, r in by_qid.items() if q in sel_ids and is_error(r))
            err = self.cfg.errors_path
            summary.errors_file = str(err) if err is not None and err.exists() else None
            summary.metrics, summary.metrics_note = score_run(self.cfg, self.selected, self.all_samples, by_qid)
        summary.elapsed_s = round(time.perf_counter() - self.t_start, 3)
        if self.dist.main:
            atomic_write_text(self.cfg.out / SUMMARY_NAME, summary.model_dump_json(indent=2) + "\n")
        return summary

    def _summary(self, gathered: list[dict[str, Any]], conf: dict[str, Any]) -> EvalSummary:
        total = sum(g["processed"] for g in gathered)
        slowest = max(g["run_s"] for g in gathered)
        cache: dict[str, Any] = {"enabled": self.cfg.cache}
        if self.cfg.cache:
            cache["dir"] = gathered[0]["cache"].get("dir")
            for k in ("hits", "misses", "writes", "errors"):
                cache[k] = sum(g["cache"].get(k, 0) for g in gathered)
        cache["decoded_videos"] = sum(g["cache"]["decoded_videos"] for g in gathered)
        first = [e for g in gathered for e in g["errors"]][:5]
        return EvalSummary(
            dataset=self.cfg.dataset, out=str(self.cfg.out), predictions_file=str(self.cfg.predictions_path),
            samples=len(self.selected), runnable=len(self.runnable),
            skipped_missing=len(self.selected) - len(self.runnable), missing_videos=self.bad[:5],
            empty_windows=self.empty_windows, resumed=self.resumed, processed=total,
            errors_this_run=sum(g["n_errors"] for g in gathered),
            first_errors=[{"qid": qid_of(e), "error": str(e["error"])} for e in first],
            truncated_prompts=sum(g["truncated"] for g in gathered), load_s=round(self.load_s, 3),
            samples_per_s=round(total / slowest, 4) if total and slowest else None,
            batch_size=self.cfg.batch_size, world_size=self.dist.world, cache=cache, config=conf,
            notice=weights_notice(conf["random_weights"]),
            is_main_process=self.dist.main,
        )


def run_eval(
    config: EvalConfig | dict[str, Any],
    runtime: Any = None,
    progress: bool = True,
    console: Any = None,
    on_status: Callable[[str], None] | None = None,
) -> EvalSummary:
    """Evaluate a dataset end to end: pre-flight, batched predictions streamed to JSONL, merge, metrics.

    Args:
        config: :class:`EvalConfig` (or a dict of its fields).
        runtime: a loaded runtime; loaded from ``config`` after the pre-flight when omitted.
        progress: show progress on stderr (main process only; plain lines when stderr is not a terminal).
        console: rich console for progress (default: stderr).
        on_status: receives one-line notes (pre-flight warnings, resume counts, errors).

    Raises:
        InputError: bad annotations/options, output exists without ``resume``/``overwrite``, a resumed folder
            written with other settings.
        VideoError: missing/unreadable videos without ``skip_missing``.
    """
    cfg = config if isinstance(config, EvalConfig) else EvalConfig.model_validate(config)
    run = EvalRun(cfg, runtime, progress, console, on_status or (lambda msg: log.info("%s", msg)))
    with run.runlog.capture(run.started(), run.interrupted), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # seeded without disturbing the caller's RNG
        for step in (run.load, run.check_videos, run.prepare_output, run.load_model, run.predict):
            step()
        summary = run.finish()
        run.runlog.write(run.finished(summary))
        return summary


__all__ = [
    "EvalConfig",
    "EvalRun",
    "EvalSummary",
    "group_by_video",
    "is_error",
    "plan_batches",
    "read_records",
    "run_eval",
    "shard_batches",
]
