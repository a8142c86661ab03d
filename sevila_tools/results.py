"""Typed results (``sevila_tools.schemas``) built from pipeline outputs: one converter per result type."""

from __future__ import annotations

from typing import Any

from sevila_tools.answering import Answer
from sevila_tools.encoding import EncodedVideo
from sevila_tools.pipeline import pseudo_labels_of
from sevila_tools.prompts import LETTERS
from sevila_tools.schemas import (
    AnswerResult,
    FrameLabel,
    FrameScore,
    KeyFrame,
    LocalizeRequest,
    LocalizeResult,
    ModelInfo,
    PseudoLabelResult,
    weights_notice,
)
from sevila_tools.selectors import Selection


def model_info(runtime: Any) -> ModelInfo:
    """Provenance block attached to every result."""
    return ModelInfo(
        model=str(runtime.info.get("model")),
        checkpoint=runtime.info.get("checkpoint"),
        random_weights=runtime.random_weights,
        device=str(runtime.device),
    )


def notice(runtime: Any) -> str | None:
    """The random-weights notice for this runtime's weights (:func:`~sevila_tools.schemas.weights_notice`)."""
    return weights_notice(runtime.random_weights)


def localize_result(req: LocalizeRequest, ev: EncodedVideo, sel: Selection, runtime: Any) -> LocalizeResult:
    """Every candidate with its score plus the keyframes."""
    probs = sel.extra.get("yes_prob")
    chosen = {p for p in sel.candidate_positions if p is not None}
    frames = [
        FrameScore(
            position=p, frame_index=idx, time=t,
            score=None if sel.candidate_scores is None else sel.candidate_scores[p],
            yes_prob=None if probs is None else probs[p], keyframe=p in chosen,
        )
        for p, (idx, t) in enumerate(zip(ev.indices, ev.times, strict=True))
    ]
    keyframes = [
        KeyFrame(frame_index=i, time=t, score=s, position=p)
        for i, t, s, p in zip(sel.frame_indices, sel.times, sel.scores, sel.candidate_positions, strict=True)
    ]
    extra = {k: v for k, v in sel.extra.items() if k not in ("yes_prob", "prompt")}
    return LocalizeResult(
        video=req.video, question=req.question, options=list(req.options), selector=sel.selector,
        num_frames=req.num_frames, num_keyframes=req.num_keyframes, fps=ev.frames.fps,
        padded=ev.frames.padded, frames=frames, keyframes=keyframes, prompt=sel.extra.get("prompt"),
        selection={"config": sel.config, **extra}, model=model_info(runtime), notice=notice(runtime),
    )


def answer_result(video: str, question: str, options: list[str], ans: Answer, runtime: Any) -> AnswerResult:
    """The Answerer's decision as the public result model."""
    return AnswerResult(
        video=video, question=question, options=list(options), answer_index=ans.index,
        answer_letter=LETTERS[ans.index], answer_text=options[ans.index], option_probs=list(ans.probs),
        frame_indices=list(ans.frame_indices), frame_times=list(ans.frame_times), decoding=ans.decoding,
        answerer=ans.strategy, step0_token=ans.step0_token, step0_is_option=ans.step0_is_option,
        truncated=ans.truncated, votes=ans.votes, prompt=ans.prompt, model=model_info(runtime),
        notice=notice(runtime),
    )


def pseudo_label_result(
    video: str, question: str, answer: int, ev: EncodedVideo, predictions: list[int], runtime: Any
) -> PseudoLabelResult:
    """Per-frame yes/no labels with the single-frame predictions behind them."""
    rows = zip(ev.indices, ev.times, predictions, pseudo_labels_of(predictions, answer), strict=True)
    labels = [FrameLabel(position=p, frame_index=i, time=t, predicted=pred, label=lab)
              for p, (i, t, pred, lab) in enumerate(rows)]
    rate = sum(lab.label == "yes" for lab in labels) / len(labels)
    return PseudoLabelResult(
        video=video, question=question, answer=answer, labels=labels, positive_rate=rate,
        model=model_info(runtime), notice=notice(runtime),
    )
