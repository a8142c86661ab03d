"""Validation during training: the forward chain in batches + the dataset's scorer, or frame-level accuracy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from torch import nn

from sevila_tools.encoding import FrameSpec, MemoryStore, VideoEncoder
from sevila_tools.pipeline import Pipeline, Query
from sevila_tools.training.accel import gather
from sevila_tools.training.frozen import query_of


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The whole model in eval mode (no dropout), previous modes restored after."""
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in saved:
            m.training = mode


def _encoded(
    pipeline: Pipeline, samples: Sequence[Any], cfg: Any, accelerator: Any
) -> Iterator[tuple[Any, Any]]:
    """This process's share of the samples with their uniform ``val_frames`` candidates encoded (or the error
    of a video that fails); questions of one video are adjacent so the small store reuses its features."""
    mine = list(samples)[accelerator.process_index :: accelerator.num_processes]
    mine.sort(key=lambda s: (s.video, s.start or 0.0, s.end or 0.0))
    encoder = VideoEncoder(pipeline.runtime, decoder=cfg.decoder, store=MemoryStore(max_items=2))
    specs = [FrameSpec(s.video, cfg.val_frames, s.start, s.end, empty_window="start_frame") for s in mine]
    for s, (_, ev) in zip(mine, encoder.encode_many(specs), strict=True):
        yield s, ev


def _batches(
    pipeline: Pipeline, samples: Sequence[Any], cfg: Any, accelerator: Any, bar: Any, failed: list[str]
):
    task = bar.add_task("validate", total=-(-len(samples) // accelerator.num_processes), info="")
    batch: list[tuple[Any, Any]] = []
    for s, ev in _encoded(pipeline, samples, cfg, accelerator):
        bar.update(task, advance=1)
        if isinstance(ev, Exception):
            failed.append(str(s.qid))
            continue
        batch.append((s, ev))
        if len(batch) == cfg.val_batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def qa_validation(
    pipeline: Pipeline, samples: Sequence[Any], cfg: Any, accelerator: Any, bar: Any
) -> dict[str, Any]:
    """The forward chain (``val_frames`` uniform candidates -> Localizer top-``num_keyframes`` -> Answerer) in
    eval mode, scored by the dataset's official scorer; ``value`` is its headline metric (percent)."""
    from sevila_tools.eval.datasets import get_dataset

    preds: dict[str, int] = {}
    failed: list[str] = []
    with eval_mode(pipeline.runtime.model):
        for batch in _batches(pipeline, samples, cfg, accelerator, bar, failed):
            outs = pipeline.forward([(ev, query_of(s)) for s, ev in batch], cfg.num_keyframes)
            preds.update({str(s.qid): out.answer.index for (s, _), out in zip(batch, outs, strict=True)})
    parts = gather(accelerator, (preds, failed))
    merged = {k: v for p, _ in parts for k, v in p.items()}
    failed = [q for _, f in parts for q in f]
    if not merged:
        return {"metric": "accuracy", "value": 0.0, "questions": 0, "failed_videos": len(failed)}
    scores = get_dataset(cfg.dataset).score(merged, list(samples), allow_missing=True, split="val")
    return {
        "metric": scores["headline"]["metric"],
        "value": float(scores["headline"]["value"]),
        "questions": len(merged),
        "failed_videos": len(failed),
        "display": scores.get("display"),
    }


def frame_validation(
    pipeline: Pipeline, samples: Sequence[Any], cfg: Any, accelerator: Any, bar: Any
) -> dict[str, Any]:
    """Frame accuracy (%) of the Localizer on ``val_frames`` uniform frames per query, scored by the frame
    scorer: a frame is ``yes`` iff its yes logit beats its no logit, the truth comes from the annotated spans.
    The decisions come from :func:`sevila_tools.eval.predict.moments`, so validation sees exactly the frames
    ``sevila eval`` scores (padded duplicates of a short video dropped, times unrounded)."""
    from sevila_tools.eval.predict import moments
    from sevila_tools.eval.scorers import FRAME_SEC, FRAME_YES, frame_accuracy

    lines: list[dict[str, Any]] = []
    failed: list[str] = []
    with eval_mode(pipeline.runtime.model):
        for batch in _batches(pipeline, samples, cfg, accelerator, bar, failed):
            found = moments(pipeline, [(ev, Query(s.question)) for s, ev in batch], [s.duration for s, _ in batch])
            for (s, _), m in zip(batch, found, strict=True):
                lines.append({"qid": str(s.qid), FRAME_SEC: m.frame_sec, FRAME_YES: m.frame_yes})
    parts = gather(accelerator, (lines, failed))
    lines = [x for p, _ in parts for x in p]
    failed = [q for _, f in parts for q in f]
    truth = [{"qid": str(s.qid), "relevant_windows": s.windows} for s in samples]
    scores = frame_accuracy(lines, truth, match_number=False) if lines else {"accuracy": 0.0, "frames": 0}
    return {
        "metric": "frame_accuracy",
        "value": float(scores["accuracy"] or 0.0),
        "frames": scores["frames"],
        "questions": len(lines),
        "failed_videos": len(failed),
    }
