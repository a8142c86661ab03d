"""SeViLA as typed tools (``Localizer``, ``Answerer``, ``PseudoLabeller``): pydantic request in, result out.

Each tool is a thin adapter over one :class:`~sevila_tools.pipeline.Pipeline`; tools built from the same
pipeline share its runtime, encoder and feature store. A request is validated once: an instance of the tool's
request model is used as it is. The list of tools that agents, the CLI and the web page read (names,
descriptions, runs) is :data:`sevila_tools.agents.toolset.TOOL_SPECS`."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from sevila_tools.encoding import EncodedVideo, FeatureStore, FrameSpec, VideoEncoder
from sevila_tools.pipeline import Pipeline, Query
from sevila_tools.results import answer_result, localize_result, model_info, notice, pseudo_label_result
from sevila_tools.schemas import (
    AnswerRequest,
    AnswerResult,
    LocalizeRequest,
    LocalizeResult,
    PseudoLabelRequest,
    PseudoLabelResult,
)
from sevila_tools.selectors import Selection

__all__ = ["Answerer", "Localizer", "PseudoLabeller", "Tool", "make_pipeline", "model_info", "notice", "validated"]


def validated(model: type[BaseModel], request: BaseModel | dict[str, Any]) -> Any:
    """``request`` as a ``model`` instance: used as is when it already is one (validated once), else validated."""
    if type(request) is model:
        return request
    return model.model_validate(request if isinstance(request, dict) else request.model_dump())


def make_pipeline(
    runtime: Any,
    *,
    decoder: str = "auto",
    store: FeatureStore | None = None,
    prompts: str | None = None,
    selector_options: dict[str, Any] | None = None,
    **kw: Any,
) -> Pipeline:
    """A pipeline with its own encoder (``decoder``, ``store``) over ``runtime``."""
    encoder = VideoEncoder(runtime, decoder=decoder, store=store)
    return Pipeline(runtime, encoder=encoder, prompts=prompts, selector_options=selector_options, **kw)


class Tool:
    """Base of the typed tools: validates the request, runs, returns the result model.

    Build from a runtime (a private pipeline is made with ``decoder``/``store``/``prompts``/
    ``selector_options``) or pass ``pipeline=`` to share one."""

    request_model: ClassVar[type[BaseModel]]
    result_model: ClassVar[type[BaseModel]]

    def __init__(self, runtime: Any = None, *, pipeline: Pipeline | None = None, **pipeline_options: Any) -> None:
        self.pipeline = pipeline if pipeline is not None else make_pipeline(runtime, **pipeline_options)
        self.runtime = self.pipeline.runtime

    @property
    def encoder(self) -> VideoEncoder:
        return self.pipeline.encoder

    def __call__(self, request: BaseModel | dict[str, Any]) -> Any:
        return self.run(validated(self.request_model, request))

    def run(self, req: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Localizer(Tool):
    """Scores every sampled frame ("does this frame answer the question?") and keeps the top-k, in time order."""

    request_model: ClassVar[type[BaseModel]] = LocalizeRequest
    result_model: ClassVar[type[BaseModel]] = LocalizeResult

    def encode(self, req: LocalizeRequest) -> EncodedVideo:
        """The request's candidates (as many as its selector needs), encoded once."""
        n = self.pipeline.selector(req.selector).num_candidates(req.num_frames, req.num_keyframes)
        return self.encoder.encode(FrameSpec(req.video, n, req.start, req.end))

    def select(self, req: LocalizeRequest, ev: EncodedVideo) -> Selection:
        q = Query(req.question, list(req.options), req.answer)
        return self.pipeline.select([(ev, q)], req.num_keyframes, req.selector)[0]

    def run(self, req: LocalizeRequest) -> LocalizeResult:
        ev = self.encode(req)
        return localize_result(req, ev, self.select(req, ev), self.runtime)


class Answerer(Tool):
    """Reads keyframes together (``Frame i:`` prefixes) and picks the option letter."""

    request_model: ClassVar[type[BaseModel]] = AnswerRequest
    result_model: ClassVar[type[BaseModel]] = AnswerResult

    def run(self, req: AnswerRequest) -> AnswerResult:
        if req.timestamps:
            ev = self.encoder.at_times(req.video, req.timestamps)
        else:
            ev = self.encoder.encode(FrameSpec(req.video, req.num_frames, req.start, req.end))
        q = Query(req.question, list(req.options))
        ans = self.pipeline.answer_frames([(ev, q)], answerer=req.answerer, decoding=req.decoding)[0]
        return answer_result(req.video, req.question, list(req.options), ans, self.runtime)


class PseudoLabeller(Tool):
    """Reverse chain: the frozen Answerer labels each frame 'yes' if that frame alone yields the gold answer."""

    request_model: ClassVar[type[BaseModel]] = PseudoLabelRequest
    result_model: ClassVar[type[BaseModel]] = PseudoLabelResult

    def run(self, req: PseudoLabelRequest) -> PseudoLabelResult:
        spec = FrameSpec(req.video, req.num_frames, req.start, req.end, mode=req.sampling, seed=req.seed)
        ev = self.encoder.encode(spec)
        preds = self.pipeline.single_frame_predictions([(ev, Query(req.question, list(req.options), req.answer))])
        return pseudo_label_result(req.video, req.question, req.answer, ev, preds[0], self.runtime)
