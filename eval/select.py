"""``sevila select``: a dataset's keyframes, one record per question in ``RUN/frames.jsonl`` (``docs/frames.md``).

The run is :class:`~sevila_tools.eval.runner.EvalRun` with frame records instead of predictions: the same
pre-flight, run folder, ``settings.json``, resume and overwrite rules, several processes, feature cache and error
records; only the selector runs (no Answerer), and no metric is computed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, Field

from sevila_tools.encoding import EncodedVideo
from sevila_tools.errors import InputError, first_line
from sevila_tools.frames import FRAMES_NAME, Candidates, ErrorRecord, FrameRecord, Provenance, dump_record
from sevila_tools.pipeline import Query
from sevila_tools.schemas import DEFAULT_ANSWERER

from .datasets import Sample
from .records import is_error
from .runner import SUMMARY_NAME, EvalRun, SelectionOptions

log = logging.getLogger("sevila_tools.eval")


class SelectConfig(SelectionOptions):
    """Everything that defines one ``sevila select`` run (recorded in ``summary.json``); ``out`` is the run folder
    (``frames.jsonl``, ``settings.json``, ``summary.json``, ``log.txt``)."""

    out: Path = Field(description="Run folder: frames.jsonl, settings.json, summary.json, log.txt.")

    # what the shared run machinery reads: every dataset is a selection run here, with no Answerer
    is_moments: ClassVar[bool] = False
    answerer: ClassVar[str] = DEFAULT_ANSWERER
    errors_path: ClassVar[None] = None

    @property
    def predictions_path(self) -> Path:
        return self.out / FRAMES_NAME


class SelectSummary(BaseModel):
    """Outcome of :func:`run_select` (``--json`` prints it; ``summary.json`` holds it)."""

    dataset: str
    out: str
    frames_file: str
    samples: int = Field(description="Questions selected (after --limit).")
    runnable: int = Field(description="Questions whose video passed the pre-flight check.")
    skipped_missing: int = 0
    missing_videos: list[str] = Field(default_factory=list)
    empty_windows: int = 0
    resumed: int = Field(0, description="Questions already in the folder (skipped by --resume).")
    processed: int = Field(0, description="Questions run by this invocation (all processes).")
    records: int = Field(0, description="Questions with frames in the final file.")
    errors: int = Field(0, description="Error records in the final file.")
    errors_this_run: int = 0
    first_errors: list[dict[str, str]] = Field(default_factory=list)
    elapsed_s: float = 0.0
    load_s: float = 0.0
    samples_per_s: float | None = None
    world_size: int = 1
    cache: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    notice: str | None = None
    is_main_process: bool = True


def _r(x: float | None) -> float | None:
    return None if x is None else float(x)


def frame_record(sample: Sample, ev: EncodedVideo, sel: Any, k: int, provenance: Provenance) -> FrameRecord:
    """One question's selection as a ``frames.jsonl`` record."""
    scores = None if all(s is None for s in sel.scores) else [_r(s) for s in sel.scores]
    cand = None
    if sel.candidate_scores is not None:
        cand = Candidates(native_indices=list(sel.candidate_frame_indices), timestamps_s=list(sel.candidate_times),
                          scores=[float(s) for s in sel.candidate_scores])
    return FrameRecord(
        dataset=sample.dataset, question_id=sample.qid, video=sample.video_id, video_path=sample.video,
        question=sample.question, start_s=sample.start, end_s=sample.end, selector=sel.selector, k=k,
        timestamps_s=[float(t) for t in sel.times], native_indices=[int(i) for i in sel.frame_indices],
        scores=scores, candidates=cand, fps=float(ev.frames.fps), num_frames=int(ev.frames.num_video_frames),
        provenance=provenance,
    )


class SelectRun(EvalRun):
    """``load`` -> ``check_videos`` -> ``prepare_output`` -> ``load_model`` -> ``predict`` -> ``finish``, as
    :class:`EvalRun`, writing frame records."""

    label = "select"
    cfg: SelectConfig

    def settings(self) -> dict[str, Any]:
        """What changes a selection; a resumed run must match it."""
        out = super().settings()
        for key in ("decoding", "answerer"):
            out.pop(key, None)
        return out

    def load_model(self) -> None:
        from sevila_tools import __version__
        from sevila_tools.provenance import checkpoint_identity

        super().load_model()
        ident = checkpoint_identity(self.runtime)
        self.provenance = Provenance(
            model=str(self.runtime.info.get("model")), checkpoint=ident["checkpoint"],
            checkpoint_sha256=ident["checkpoint_sha256"], toolkit_version=__version__,
            selector_config=json.loads(json.dumps(self.pipeline.selector().config(), default=str)),
        )

    def _predict_batch(self, items: list[tuple[Sample, EncodedVideo]]) -> list[dict[str, Any]]:
        k = self.cfg.keyframes
        pairs = [(ev, Query(s.question, list(s.options), s.answer, s.qid)) for s, ev in items]
        selections = self.pipeline.select(pairs, k)
        return [dump_record(frame_record(s, ev, sel, k, self.provenance))
                for (s, ev), sel in zip(items, selections, strict=True)]

    def error_record(self, sample: Sample, exc: BaseException) -> dict[str, Any]:
        rec = ErrorRecord(dataset=sample.dataset, question_id=sample.qid, video=sample.video_id,
                          error=first_line(exc))
        return dump_record(rec)

    def finish(self) -> SelectSummary:  # type: ignore[override]
        from .session import summary_config

        gathered, by_qid = self.merge()
        conf = summary_config(self.cfg, self.runtime, self.pipeline, self.dist.world)
        for key in ("decoding", "answerer", "span"):
            conf.pop(key, None)
        base = self._summary(gathered, conf).model_dump()
        keep = set(SelectSummary.model_fields) & set(base)
        summary = SelectSummary(**{k: base[k] for k in keep}, frames_file=str(self.cfg.predictions_path))
        if self.dist.main:
            ids = {s.qid for s in self.selected}
            summary.records = sum(1 for q, r in by_qid.items() if q in ids and not is_error(r))
            summary.errors = sum(1 for q, r in by_qid.items() if q in ids and is_error(r))
        summary.elapsed_s = round(time.perf_counter() - self.t_start, 3)
        if self.dist.main:
            from sevila_tools.files import atomic_write_text

            atomic_write_text(self.cfg.out / SUMMARY_NAME, summary.model_dump_json(indent=2) + "\n")
        return summary


def run_select(
    config: SelectConfig | dict[str, Any],
    runtime: Any = None,
    progress: bool = True,
    console: Any = None,
    on_status: Callable[[str], None] | None = None,
) -> SelectSummary:
    """Select keyframes for every question of a dataset and write ``RUN/frames.jsonl`` (resumable).

    Raises:
        InputError: bad annotations/options, an output folder that exists without ``resume``/``overwrite``, a
            resumed folder written with other settings.
        VideoError: missing/unreadable videos without ``skip_missing``.
    """
    cfg = config if isinstance(config, SelectConfig) else SelectConfig.model_validate(config)
    if cfg.out.exists() and not cfg.out.is_dir():
        raise InputError(f"--out must be a folder: {cfg.out} is a file")
    run = SelectRun(cfg, runtime, progress, console, on_status or (lambda msg: log.info("%s", msg)))  # type: ignore[arg-type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for step in (run.load, run.check_videos, run.prepare_output, run.load_model, run.predict):
            step()
        return run.finish()


__all__ = ["SelectConfig", "SelectRun", "SelectSummary", "frame_record", "run_select"]
