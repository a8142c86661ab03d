"""SeViLA as typed tools: :class:`Localizer`, :class:`Answerer`, :class:`PseudoLabeller`.

Each tool has a ``name``, a one-line ``description`` written for an LLM tool list, a pydantic
``request_model`` and ``result_model``, and is called with a request (model or dict). All tools built on the
same :class:`~sevila_tools.runtime.SevilaRuntime` share its weights; pass one ``cache`` to share decoded
frames and ViT features too.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from sevila_tools.errors import InputError
from sevila_tools.features import FeatureStore, FrameSet, load_frame_set
from sevila_tools.prompts import LETTERS, prompts_for
from sevila_tools.runtime import SevilaRuntime
from sevila_tools.schemas import (
    RANDOM_WEIGHTS_NOTICE,
    AnswerRequest,
    AnswerResult,
    FrameLabel,
    FrameScore,
    KeyFrame,
    LocalizeRequest,
    LocalizeResult,
    ModelInfo,
    PseudoLabelRequest,
    PseudoLabelResult,
)
from sevila_tools.selectors import Selection, Selector, SelectorInput, build_selector
from sevila_tools.video import frames_at_times


def model_info(runtime: SevilaRuntime) -> ModelInfo:
    """Provenance block attached to every result."""
    return ModelInfo(
        model=str(runtime.info.get("model")),
        checkpoint=runtime.info.get("checkpoint"),
        random_weights=runtime.random_weights,
        device=str(runtime.device),
    )


def notice(runtime: SevilaRuntime) -> str | None:
    return RANDOM_WEIGHTS_NOTICE if runtime.random_weights else None


class Tool:
    """Base of the typed tools: validates the request, runs, returns the result model."""

    name: ClassVar[str]
    description: ClassVar[str]
    request_model: ClassVar[type[BaseModel]]
    result_model: ClassVar[type[BaseModel]]

    def __init__(
        self,
        runtime: SevilaRuntime,
        decoder: str = "auto",
        cache: FeatureStore | None = None,
        dataset: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.decoder = decoder
        self.cache = cache
        self.dataset = dataset

    def __call__(self, request: BaseModel | dict[str, Any]) -> Any:
        req = self.request_model.model_validate(
            request if isinstance(request, dict) else request.model_dump()
        )
        return self.run(req)

    def run(self, req: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Localizer(Tool):
    """Scores every sampled frame ("does this frame answer the question?") and keeps the top-k, in time order."""

    name: ClassVar[str] = "localize_keyframes"
    description: ClassVar[str] = (
        "Find the moments of a video that matter for a question: samples frames, scores each one and returns "
        "the top keyframes with their times in seconds."
    )
    request_model: ClassVar[type[BaseModel]] = LocalizeRequest
    result_model: ClassVar[type[BaseModel]] = LocalizeResult

    def __init__(
        self, *args: Any, selector_options: dict[str, dict[str, Any]] | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.selector_options = selector_options or {}
        self._selectors: dict[str, Selector] = {}

    def selector(self, name: str) -> Selector:
        """The (cached) selector instance for ``name``."""
        if name not in self._selectors:
            opts = dict(self.selector_options.get(name, {}))
            if name in ("localizer", "oracle"):
                opts.setdefault("dataset", self.dataset)
            self._selectors[name] = build_selector(name, self.runtime, **opts)
        return self._selectors[name]

    def frames(self, video: str, num_frames: int, start: float | None, end: float | None) -> FrameSet:
        return load_frame_set(
            self.runtime, video, num_frames, start, end, decoder=self.decoder, cache=self.cache
        )

    def select(self, req: LocalizeRequest, fs: FrameSet) -> Selection:
        inp = SelectorInput(
            video=req.video,
            candidates=fs.frames,
            question=req.question,
            options=list(req.options),
            start=req.start,
            end=req.end,
            raw_features=fs.raw,
            answer=req.answer,
        )
        return self.selector(req.selector).select(inp, req.num_keyframes)

    def result(self, req: LocalizeRequest, fs: FrameSet, sel: Selection) -> LocalizeResult:
        probs = sel.extra.get("yes_prob")
        chosen = {p for p in sel.candidate_positions if p is not None}
        frames = [
            FrameScore(
                position=p,
                frame_index=idx,
                time=t,
                score=None if sel.candidate_scores is None else sel.candidate_scores[p],
                yes_prob=None if probs is None else probs[p],
                keyframe=p in chosen,
            )
            for p, (idx, t) in enumerate(zip(fs.frames.indices, fs.frames.timestamps, strict=True))
        ]
        keyframes = [
            KeyFrame(frame_index=i, time=t, score=s, position=p)
            for i, t, s, p in zip(
                sel.frame_indices, sel.times, sel.scores, sel.candidate_positions, strict=True
            )
        ]
        extra = {k: v for k, v in sel.extra.items() if k not in ("yes_prob", "prompt")}
        return LocalizeResult(
            video=req.video,
            question=req.question,
            options=list(req.options),
            selector=sel.selector,
            num_frames=req.num_frames,
            num_keyframes=req.num_keyframes,
            fps=fs.frames.fps,
            padded=fs.frames.padded,
            frames=frames,
            keyframes=keyframes,
            prompt=sel.extra.get("prompt"),
            selection={"config": sel.config, **extra},
            model=model_info(self.runtime),
            notice=notice(self.runtime),
        )

    def run(self, req: LocalizeRequest) -> LocalizeResult:
        fs = self.frames(req.video, req.num_frames, req.start, req.end)
        return self.result(req, fs, self.select(req, fs))


class Answerer(Tool):
    """Reads keyframes together (``Frame i:`` prefixes) and picks the option letter."""

    name: ClassVar[str] = "answer_video_question"
    description: ClassVar[str] = (
        "Answer a multiple-choice question about a video from a few frames (uniform, or at given timestamps); "
        "returns the chosen option and each option's probability."
    )
    request_model: ClassVar[type[BaseModel]] = AnswerRequest
    result_model: ClassVar[type[BaseModel]] = AnswerResult

    def answer_features(
        self,
        video: str,
        raw_keyframes: torch.Tensor,
        question: str,
        options: list[str],
        frame_indices: list[int],
        frame_times: list[float],
        decoding: str = "faithful",
        answerer: str = "concat",
    ) -> AnswerResult:
        """Answer from raw ViT features of the keyframes ``(K, L, D)`` (temporal order)."""
        if not 2 <= len(options) <= len(LETTERS):
            raise InputError(f"the Answerer needs 2 to {len(LETTERS)} options (got {len(options)})")
        _, qa_text = prompts_for(self.dataset, question, options)
        n = len(options)
        votes = None
        if answerer == "concat":
            out = self.runtime.answer(raw_keyframes[None], [qa_text], n, decoding)  # type: ignore[arg-type]
            probs = out.probs[0].tolist()
            index = out.predictions[0]
            step0 = out.step0_tokens[0]
        elif answerer == "voting":
            out = self.runtime.frame_answers(raw_keyframes[None], [qa_text], n, decoding)  # type: ignore[arg-type]
            votes = out.predictions
            frame_probs = out.probs
            probs = frame_probs.mean(0).tolist()
            counts = Counter(votes)
            # majority vote; ties broken by the summed per-frame probability, then by the lower option index
            index = max(range(n), key=lambda i: (counts.get(i, 0), probs[i], -i))
            step0 = out.step0_tokens[0]
        else:
            raise InputError(f"unknown answerer {answerer!r}; use concat or voting")
        step0_piece = self.runtime.token_str(step0)
        return AnswerResult(
            video=video,
            question=question,
            options=list(options),
            answer_index=index,
            answer_letter=LETTERS[index],
            answer_text=options[index],
            option_probs=probs,
            frame_indices=list(frame_indices),
            frame_times=list(frame_times),
            decoding=decoding,
            answerer=answerer,
            step0_token=step0_piece,
            step0_is_option=step0 == self.runtime.ids.option,
            truncated=out.truncated[0],
            votes=votes,
            prompt=qa_text,
            model=model_info(self.runtime),
            notice=notice(self.runtime),
        )

    def run(self, req: AnswerRequest) -> AnswerResult:
        if req.timestamps:
            frames = frames_at_times(req.video, req.timestamps, decoder=self.decoder)
        else:
            frames = load_frame_set(
                self.runtime,
                req.video,
                req.num_frames,
                req.start,
                req.end,
                decoder=self.decoder,
                cache=self.cache,
            ).frames
        order = sorted(range(len(frames.indices)), key=lambda i: frames.indices[i])
        raw = self.runtime.vit(frames.frames[order])
        return self.answer_features(
            req.video,
            raw,
            req.question,
            list(req.options),
            [frames.indices[i] for i in order],
            [frames.timestamps[i] for i in order],
            req.decoding,
        )


class PseudoLabeller(Tool):
    """Reverse chain: the frozen Answerer labels each frame 'yes' if that frame alone yields the gold answer."""

    name: ClassVar[str] = "pseudo_label_frames"
    description: ClassVar[str] = (
        "Label sampled frames of a video yes/no by whether the answerer, reading that frame alone, picks the "
        "known correct option (the reverse chain used to train the localizer)."
    )
    request_model: ClassVar[type[BaseModel]] = PseudoLabelRequest
    result_model: ClassVar[type[BaseModel]] = PseudoLabelResult

    def label_features(self, raw: torch.Tensor, question: str, options: list[str], answer: int) -> list[int]:
        """Teacher-forced single-frame predictions for raw features ``(T, L, D)`` (``sevila.md`` §9.2)."""
        _, qa_text = prompts_for(self.dataset, question, options)
        return self.runtime.frame_answers(raw[None], [qa_text], len(options), "teacher_forced").predictions

    def run(self, req: PseudoLabelRequest) -> PseudoLabelResult:
        fs = load_frame_set(
            self.runtime,
            req.video,
            req.num_frames,
            req.start,
            req.end,
            decoder=self.decoder,
            mode=req.sampling,
            seed=req.seed,
            cache=self.cache if req.sampling == "uniform" else None,
        )
        preds = self.label_features(fs.raw, req.question, list(req.options), req.answer)
        labels = [
            FrameLabel(
                position=p, frame_index=i, time=t, predicted=pred, label="yes" if pred == req.answer else "no"
            )
            for p, (i, t, pred) in enumerate(zip(fs.frames.indices, fs.frames.timestamps, preds, strict=True))
        ]
        rate = sum(lab.label == "yes" for lab in labels) / len(labels)
        return PseudoLabelResult(
            video=req.video,
            question=req.question,
            answer=req.answer,
            labels=labels,
            positive_rate=rate,
            model=model_info(self.runtime),
            notice=notice(self.runtime),
        )
