"""The one list of SeViLA tools: name, model-facing description, request and result models, run, summary.

The LangChain tools, the MCP server, the CLI (``sevila localize`` / ``moments``) and the web page read this list
(:data:`TOOL_SPECS`); each entry runs on a lazily built :class:`~sevila_tools.chain.SevilaChain` and receives its
request already validated (once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sevila_tools.prompts import LETTERS
from sevila_tools.schemas import (
    AnswerRequest,
    AnswerResult,
    AskRequest,
    AskResult,
    ForwardRequest,
    KeyFrame,
    ListSelectorsRequest,
    LocalizeRequest,
    LocalizeResult,
    MomentsRequest,
    MomentsResult,
    PseudoLabelRequest,
    PseudoLabelResult,
    SelectorInfo,
    SelectorList,
    VideoAnswerResult,
    VideoQuestionRequest,
)

#: Per-frame rows are sent to the model only up to this many candidate frames (else keyframes only).
SMALL_FRAME_LIST = 16
#: a zero-argument function returning the shared chain (builds it, and loads the model, on first call)
ChainGetter = Callable[[], Any]


# ------------------------------------------------------------------------------------------------ summaries
def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def _keyframes(kfs: list[KeyFrame]) -> list[dict[str, Any]]:
    return [{"time": _r(k.time), "frame_index": k.frame_index, "score": _r(k.score, 4)} for k in kfs]


def _with_notice(d: dict[str, Any], notice: str | None) -> dict[str, Any]:
    if notice:
        d["notice"] = notice
    return d


def summarize_localize(res: LocalizeResult) -> dict[str, Any]:
    """What the model reads from localize_keyframes: keyframe times and scores (all frames only when few)."""
    out: dict[str, Any] = {"video": res.video, "selector": res.selector, "num_frames": res.num_frames,
                           "keyframes": _keyframes(res.keyframes)}
    if len(res.frames) <= SMALL_FRAME_LIST and any(f.score is not None for f in res.frames):
        out["frames"] = [{"time": _r(f.time), "score": _r(f.score, 4)} for f in res.frames]
    return _with_notice(out, res.notice)


def _answer_part(ans: AnswerResult) -> dict[str, Any]:
    return {
        "answer": ans.answer_letter, "answer_index": ans.answer_index, "answer_text": ans.answer_text,
        "option_probs": {LETTERS[i]: _r(p, 4) for i, p in enumerate(ans.option_probs)},
    }


def summarize_answer(res: VideoAnswerResult) -> dict[str, Any]:
    """Answer letter/index/text, option probabilities, and the frames read (times in seconds)."""
    out = _answer_part(res.answer)
    if res.localization is not None:
        out["selector"] = res.localization.selector
        out["keyframes"] = _keyframes(res.localization.keyframes)
    else:
        out["frame_times"] = [_r(t) for t in res.answer.frame_times]
    return _with_notice(out, res.answer.notice)


def summarize_ask(res: AskResult) -> dict[str, Any]:
    """Free-text answer and the keyframes it was read from."""
    return _with_notice({"answer_text": res.answer_text, "keyframes": _keyframes(res.keyframes)}, res.notice)


def summarize_pseudo_label(res: PseudoLabelResult) -> dict[str, Any]:
    """Per-frame yes/no labels (time, label, predicted option) and the positive rate."""
    labels = [{"time": _r(lab.time), "label": lab.label, "predicted": LETTERS[lab.predicted]} for lab in res.labels]
    out: dict[str, Any] = {"answer": res.answer, "positive_rate": _r(res.positive_rate, 4)}
    if len(labels) <= 4 * SMALL_FRAME_LIST:
        out["labels"] = labels
    else:
        out["yes_times"] = [x["time"] for x in labels if x["label"] == "yes"]
    return _with_notice(out, res.notice)


def summarize_moments(res: MomentsResult) -> dict[str, Any]:
    """What the model reads from find_moments: the ranked windows (seconds) and the rule behind them."""
    out = {"video": res.video, "query": res.query, "duration": _r(res.duration),
           "windows": [{"start": _r(w[0]), "end": _r(w[1]), "score": _r(w[2], 4)} for w in res.pred_relevant_windows],
           "note": res.span_rule}
    return _with_notice(out, res.notice)


def summarize_selectors(res: SelectorList) -> dict[str, Any]:
    return res.model_dump(mode="json")


# ------------------------------------------------------------------------------------------------ runs
def list_selectors(_chain: ChainGetter, req: ListSelectorsRequest) -> SelectorList:
    """The registered selectors (no model needed)."""
    from sevila_tools.plugins import selectors

    return SelectorList(selectors=[
        SelectorInfo(name=i.name, description=i.description, needs_gold=i.metadata["needs_gold"])
        for i in selectors.infos()
    ])


def localize(chain: ChainGetter, req: LocalizeRequest) -> LocalizeResult:
    """Keyframes of the selector."""
    return chain().localizer(req)


def answer(chain: ChainGetter, req: VideoQuestionRequest) -> VideoAnswerResult:
    """The forward chain, or the Answerer on the frames at ``timestamps`` (fields already validated)."""
    if req.timestamps:
        fields = {"video", "question", "options", "timestamps", "decoding", "answerer"}
        ans = chain().answerer(AnswerRequest.model_construct(**req.model_dump(include=fields)))
        return VideoAnswerResult(localization=None, answer=ans)
    fwd = chain().forward(ForwardRequest.model_construct(**req.model_dump(exclude={"timestamps"})))
    return VideoAnswerResult(localization=fwd.localization, answer=fwd.answer)


def ask(chain: ChainGetter, req: AskRequest) -> AskResult:
    """Free-text answer from the keyframes."""
    return chain().ask(req)


def moments(chain: ChainGetter, req: MomentsRequest) -> MomentsResult:
    """Ranked windows for a text query."""
    from sevila_tools.eval.predict import find_moments

    c = chain()
    return find_moments(c.runtime, req, c.pipeline.encoder)


def pseudo_label(chain: ChainGetter, req: PseudoLabelRequest) -> PseudoLabelResult:
    """The reverse chain's per-frame labels."""
    return chain().pseudo_labeller(req)


@dataclass(frozen=True)
class ToolSpec:
    """One tool: name, model-facing description, request/result models, run and compact summary."""

    name: str
    description: str
    request_model: type[BaseModel]
    result_model: type[BaseModel]
    run: Callable[[ChainGetter, Any], BaseModel]  # (chain getter, validated request) -> result
    summarize: Callable[[Any], dict[str, Any]]
    needs_video: bool = True

    def keyframes(self, result: BaseModel) -> list[KeyFrame]:
        """Keyframes of a result (for thumbnails)."""
        if isinstance(result, LocalizeResult | AskResult):
            return list(result.keyframes)
        if isinstance(result, VideoAnswerResult):
            if result.localization is not None:
                return list(result.localization.keyframes)
            return [KeyFrame(frame_index=i, time=t) for i, t in zip(result.answer.frame_indices,
                                                                    result.answer.frame_times, strict=True)]
        return []


_VIDEO_NOTE = (
    " `video` is a path to a video file on this machine (relative paths are resolved against the first allowed "
    "directory). Times are in seconds."
)

TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="list_selectors",
        description=(
            "List the keyframe selectors accepted by the `selector` argument of localize_keyframes, "
            "answer_video_question and ask_video, with what each one does. The default, 'localizer' (SeViLA's "
            "learned localizer), is usually best; call this only to pick another one (e.g. 'uniform')."
        ),
        request_model=ListSelectorsRequest, result_model=SelectorList, run=list_selectors,
        summarize=summarize_selectors, needs_video=False,
    ),
    ToolSpec(
        name="localize_keyframes",
        description=(
            "Find WHEN in a video the moments relevant to a question happen, without answering it. Samples "
            "`num_frames` candidate frames evenly (optionally only between `start` and `end`), scores each one "
            "with the `selector` and returns the top `num_keyframes` keyframes in time order, each with its time "
            "and score. Use it to locate events, or to pick `timestamps` for answer_video_question."
            + _VIDEO_NOTE
        ),
        request_model=LocalizeRequest, result_model=LocalizeResult, run=localize,
        summarize=summarize_localize,
    ),
    ToolSpec(
        name="answer_video_question",
        description=(
            "Answer a MULTIPLE-CHOICE question about a video: give the `question` and 2 to 5 `options` (plain "
            "answer texts, no letters). By default it runs the full SeViLA chain: the `selector` picks the "
            "`num_keyframes` most relevant of `num_frames` candidate frames and the answerer reads them together. "
            "With `timestamps` it reads exactly the frames at those times instead. Returns the chosen option "
            "(letter A-E, 0-based index, text), every option's probability and the frame times used. For "
            "questions without candidate answers use ask_video." + _VIDEO_NOTE
        ),
        request_model=VideoQuestionRequest, result_model=VideoAnswerResult, run=answer,
        summarize=summarize_answer,
    ),
    ToolSpec(
        name="ask_video",
        description=(
            "Answer an OPEN-ENDED question about a video in free text (no options): selects keyframes like "
            "localize_keyframes, then the answerer writes a short answer (a few words) from them. Returns the "
            "text and the keyframe times. When you can list candidate answers, answer_video_question is more "
            "reliable." + _VIDEO_NOTE
        ),
        request_model=AskRequest, result_model=AskResult, run=ask, summarize=summarize_ask,
    ),
    ToolSpec(
        name="find_moments",
        description=(
            "Find WHERE in a video a described moment happens (moment retrieval): scores `num_frames` frames for "
            "the `query` text and returns ranked time windows [start, end, score] plus a saliency score per 2 s. "
            "Use it for 'when does X happen' without answer options." + _VIDEO_NOTE
        ),
        request_model=MomentsRequest, result_model=MomentsResult, run=moments, summarize=summarize_moments,
    ),
    ToolSpec(
        name="pseudo_label_frames",
        description=(
            "For a multiple-choice question whose correct option is KNOWN (`answer` = its 0-based index), label "
            "each of `num_frames` sampled frames 'yes' if the answerer picks the correct option from that frame "
            "alone, else 'no'. Shows which moments support the answer (SeViLA's reverse chain, used to train the "
            "localizer); it does not answer questions." + _VIDEO_NOTE
        ),
        request_model=PseudoLabelRequest, result_model=PseudoLabelResult, run=pseudo_label,
        summarize=summarize_pseudo_label,
    ),
)

SPECS: dict[str, ToolSpec] = {s.name: s for s in TOOL_SPECS}


def summary_json(name: str, result: BaseModel) -> str:
    """The compact JSON text the model reads for a result of tool ``name``."""
    import json

    return json.dumps(SPECS[name].summarize(result), ensure_ascii=False)
