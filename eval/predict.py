"""Pipeline outputs -> prediction records: multiple-choice lines and moment (QVHighlights-style) lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sevila_tools.encoding import EncodedVideo
from sevila_tools.errors import first_line
from sevila_tools.pipeline import ChainOutput, Pipeline, Query

from .datasets import Sample
from .moments import SpanConfig, frames_to_saliency, frames_to_windows, yes_probabilities

#: the span rule that turns per-frame decisions into windows is this toolkit's (the official code has none)
MOMENTS_NOTE = "windows come from this toolkit's span rule over per-frame Localizer decisions (docs/metrics.md)"


def _r(x: float, nd: int = 6) -> float:
    return float(round(float(x), nd))


@dataclass
class Moments:
    """Ranked windows ``[start, end, score]`` and per-2-s-clip saliency for one query on one video."""

    windows: list[list[float]]
    saliency: list[float]
    frame_sec: list[float]
    frame_yes: list[int]
    yes_prob: list[float]


def moments(pipeline: Pipeline, items: Sequence[tuple[EncodedVideo, Query]], durations: Sequence[float | None],
            span: SpanConfig | None = None) -> list[Moments]:
    """The Localizer on every candidate, turned into moments (``sevila moments``, ``sevila eval`` moments)."""
    out = []
    for (ev, _), (yes, no), duration in zip(items, pipeline.frame_logits(items), durations, strict=True):
        fr = ev.frames
        n_eff = len(fr.edges) - 1  # padded frames (short video) repeat the last one: drop them
        y, z = yes[:n_eff], no[:n_eff]
        dur = duration or fr.num_video_frames / fr.fps
        p = yes_probabilities(y, z).tolist()
        out.append(
            Moments(
                windows=frames_to_windows(y, z, fr.edges, fr.fps, dur, span),
                saliency=[_r(v, 4) for v in frames_to_saliency(p, fr.timestamps[:n_eff], dur)],
                frame_sec=[float(t) for t in fr.timestamps[:n_eff]],  # labelled as is: no rounding
                frame_yes=[int(a > b) for a, b in zip(y, z, strict=True)],
                yes_prob=[_r(v, 6) for v in p],
            )
        )
    return out


def moment_record(sample: Sample, m: Moments) -> dict[str, Any]:
    """One submission line (official fields) plus the per-frame decisions the frame-accuracy metric reads."""
    return {
        "qid": int(sample.qid),
        "query": sample.question,
        "vid": sample.video_id,
        "pred_relevant_windows": [[float(x) for x in w] for w in m.windows],
        "pred_saliency_scores": m.saliency,
        "frame_sec": m.frame_sec,
        "frame_yes": m.frame_yes,
    }


def choice_record(sample: Sample, out: ChainOutput, settings: dict[str, Any]) -> dict[str, Any]:
    """One multiple-choice line: prediction, letter probabilities, keyframes and the run's settings."""
    sel, ans = out.selection, out.answer
    rec: dict[str, Any] = {
        "qid": sample.qid,
        "video": sample.video_id,
        "qtype": sample.qtype,
        "prediction": int(ans.index),
        "answer": sample.answer,
        "letter_probs": [_r(p) for p in ans.probs],
        "keyframe_idx": list(sel.frame_indices),
        "keyframe_sec": [_r(t, 4) for t in sel.times],
        "keyframe_scores": [None if x is None else _r(x) for x in sel.scores],
        "selector": settings["selector"],
        "decoding": settings["decoding"],
        "answerer": settings["answerer"],
        "step0_token": ans.step0_token,
        "truncated": bool(ans.truncated),
    }
    if ans.votes is not None:
        rec["votes"] = ans.votes
    if "per_frame_predictions" in sel.extra:  # each candidate answered alone (the oracle): avg_acc reads them
        rec["frame_predictions"] = [int(p) for p in sel.extra["per_frame_predictions"]]
    return rec


def error_record(sample: Sample, exc: BaseException, moments_task: bool) -> dict[str, Any]:
    """A record for a question whose video could not be used (never another video's frames)."""
    qid: Any = int(sample.qid) if moments_task else sample.qid
    return {"qid": qid, "video": sample.video_id, "error": first_line(exc)}


#: the prompt style of moment retrieval (the Localizer asked whether a frame shows the query)
MOMENTS_PROMPTS = "query_relevance"


def find_moments(runtime: Any, request: Any, encoder: Any = None) -> Any:
    """``sevila moments`` / the ``find_moments`` agent tool: ranked windows and saliency for a query on any
    video, computed exactly as ``sevila eval`` does for QVHighlights (:func:`moments`)."""
    from sevila_tools.encoding import FrameSpec, VideoEncoder
    from sevila_tools.results import model_info, notice
    from sevila_tools.schemas import FrameDecision, MomentsRequest, MomentsResult

    req = MomentsRequest.model_validate(request if isinstance(request, dict) else request.model_dump())
    enc = encoder or VideoEncoder(runtime)
    pipeline = Pipeline(runtime, encoder=enc, prompts=MOMENTS_PROMPTS)
    ev = enc.encode(FrameSpec(req.video, req.num_frames, req.start, req.end))
    duration = ev.frames.num_video_frames / ev.frames.fps
    span = SpanConfig(span_threshold=req.span_threshold, max_windows=req.max_windows)
    m = moments(pipeline, [(ev, Query(req.query))], [duration], span)[0]
    frames = [FrameDecision(time=t, yes_prob=p, relevant=bool(y))
              for t, p, y in zip(m.frame_sec, m.yes_prob, m.frame_yes, strict=True)]
    return MomentsResult(
        video=req.video, query=req.query, duration=round(duration, 4), pred_relevant_windows=m.windows,
        pred_saliency_scores=m.saliency, frames=frames, span_rule=MOMENTS_NOTE, model=model_info(runtime),
        notice=notice(runtime),
    )
