"""What eval and ablate share around a run: the pipeline they build, the scoring step, the recorded config and the
run folder's ``log.txt``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sevila_tools.encoding import DiskStore, VideoEncoder
from sevila_tools.pipeline import Pipeline
from sevila_tools.provenance import environment

from .datasets import Sample
from .records import is_error


def build_pipeline(runtime: Any, cfg: Any, store: Any = None) -> Pipeline:
    """The pipeline of a dataset run: disk feature store (unless ``cfg.cache`` is off), the dataset's prompt
    style, the run's selector (options: the flat ``selector_options`` plus the run ``seed``), answerer, decoding."""
    if store is None and getattr(cfg, "cache", False):
        store = DiskStore(cfg.cache_dir, device=runtime.device)
    workers = getattr(cfg, "decode_workers", 0)
    encoder = VideoEncoder(runtime, decoder=cfg.decoder, store=store, decode_workers=workers)
    options = {"seed": cfg.seed, **dict(cfg.selector_options)}
    return Pipeline(
        runtime, encoder=encoder, prompts=cfg.spec.prompt_style, selector=cfg.selector,
        selector_options=options, answerer=cfg.answerer, decoding=cfg.decoding,
    )


def _scope_note(n_pred: int, n_sel: int, limit: int | None) -> str | None:
    if n_pred < n_sel:
        return f"{n_sel - n_pred} of {n_sel} questions have no prediction (missing video/error)"
    if limit is not None:
        return f"--limit {limit}: scored on the first {n_sel} questions only"
    return None


def score_run(
    cfg: Any, selected: Sequence[Sample], all_samples: Sequence[Sample], by_qid: dict[str, dict[str, Any]]
) -> tuple[dict | None, str | None]:
    """Metrics of the selected questions' records through the dataset's scorer, plus a note on their scope."""
    spec = cfg.spec
    preds = {s.qid: by_qid[s.qid] for s in selected if s.qid in by_qid and not is_error(by_qid[s.qid])}
    if not preds:
        return None, "no predictions to score"
    if cfg.is_moments:
        if any(s.windows is None for s in selected):
            return None, "annotations carry no relevant_windows (test split?): not scored"
        annotated = [s for s in all_samples if s.windows is not None]
        full = cfg.limit is None and len(preds) == len(annotated)
        metrics = spec.score(list(preds.values()), annotated, allow_missing=not full)
        note = None
        if not full:
            why = "--limit" if cfg.limit is not None else "missing/failed queries"
            note = (f"scored on the {len(preds)} of {len(annotated)} annotated queries that were predicted "
                    f"(match_number=False because of {why}; not comparable to a full-split result)")
        return metrics, note
    if any(s.answer is None for s in selected):
        return None, "annotations carry no gold answers (test split?): not scored"
    choices = {q: int(r["prediction"]) for q, r in preds.items()}
    metrics = spec.score(choices, list(selected), allow_missing=len(choices) < len(selected))
    if all("frame_predictions" in r for r in preds.values()):  # official frameqa's avg_acc (the oracle)
        from .scorers.frames import single_frame_accuracy

        metrics["single_frame"] = single_frame_accuracy(list(preds.values()))
    return metrics, _scope_note(len(choices), len(selected), cfg.limit)


def summary_config(cfg: Any, runtime: Any, pipeline: Pipeline, world: int) -> dict[str, Any]:
    """The full configuration of a run plus where it ran (recorded in ``summary.json``)."""
    conf: dict[str, Any] = {
        "dataset": cfg.dataset,
        "annotations": str(cfg.annotations),
        "videos": None if cfg.videos is None else str(cfg.videos),
        "video_map": None if cfg.video_map is None else str(cfg.video_map),
        "out": str(cfg.out),
        "selector": cfg.selector,
        "selector_config": {} if cfg.is_moments else pipeline.selector().config(),
        "frames": cfg.num_frames,
        "frames_decoded_per_video": cfg.num_frames if cfg.is_moments else pipeline.selector().num_candidates(
            cfg.num_frames, cfg.keyframes),
        "keyframes": None if cfg.is_moments else cfg.keyframes,
        "decoding": None if cfg.is_moments else cfg.decoding,
        "answerer": None if cfg.is_moments else cfg.answerer,
        "span": cfg.span.model_dump() if cfg.is_moments else None,
        "limit": cfg.limit,
        "batch_size": cfg.batch_size,
        "decoder": cfg.decoder,
        "seed": cfg.seed,
        "checkpoint_arg": cfg.checkpoint,
        "world_size": world,
        "feature_cache": None if pipeline.encoder.store is None else str(getattr(pipeline.encoder.store, "dir", "")),
    }
    conf.update(environment(runtime))
    return conf


class RunLog:
    """``log.txt`` of a run folder: time-stamped status lines, the package's warnings while the run lasts, and how
    it ended (finished, interrupted, failed). ``enabled=False`` (the other ranks of a multi-process run) writes nothing.
    """

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled

    def write(self, msg: str) -> None:
        """Append ``msg`` with a time stamp (creating the folder; an ``--out`` that is a file is left to the run's
        own check, which reports it)."""
        folder = self.path.parent
        if not self.enabled or (folder.exists() and not folder.is_dir()):
            return
        folder.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a", encoding="utf-8") as f:
            f.writelines(f"{stamp} {line}\n" for line in (msg.splitlines() or [""]))
        if new:
            self.path.chmod(0o644)

    @contextmanager
    def capture(self, start: str, interrupted: Callable[[], str]) -> Iterator[None]:
        """Write ``start``; keep ``sevila_tools`` warnings in the log until the block ends; on Ctrl-C write
        ``interrupted()``, on an error ``failed: <message>`` (both re-raised)."""
        handler = _ToRunLog(self)
        package = logging.getLogger("sevila_tools")
        package.addHandler(handler)
        self.write(start)
        try:
            yield
        except KeyboardInterrupt:
            self.write(interrupted())
            raise
        except Exception as exc:
            self.write(f"failed: {exc}")
            raise
        finally:
            package.removeHandler(handler)


class _ToRunLog(logging.Handler):
    """Warnings (and worse) of the package's loggers, as ``warning: <message>`` lines of a :class:`RunLog`."""

    def __init__(self, runlog: RunLog) -> None:
        super().__init__(logging.WARNING)
        self.runlog = runlog

    def emit(self, record: logging.LogRecord) -> None:
        self.runlog.write(f"{record.levelname.lower()}: {record.getMessage()}")
