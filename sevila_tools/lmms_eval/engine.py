"""SeViLA inside an lmms-eval model: one runtime, one encoder, a pipeline per prompt style (no lmms-eval import)."""

from __future__ import annotations

from typing import Any

from sevila_tools.errors import SevilaError
from sevila_tools.schemas import DEFAULT_ANSWERER, DEFAULT_FRAMES, DEFAULT_KEYFRAMES, DEFAULT_SELECTOR

from .common import DocQuestion, PluginError


class SevilaEngine:
    """The forward chain and the selectors over lmms-eval documents, as ``sevila eval`` runs them: the dataset's
    prompt style, ``frames`` candidates by SeViLA's sampling rule over the question's window, ``keyframes``
    kept, selector options plus seed 0, videos encoded once (memory store)."""

    def __init__(self, *, model: str, checkpoint: str = "auto", device: str = "auto", decoder: str = "auto",
                 trust_checkpoint: bool = False, frames: int = DEFAULT_FRAMES, keyframes: int = DEFAULT_KEYFRAMES,
                 selector: str = DEFAULT_SELECTOR, selector_options: dict[str, Any] | None = None,
                 answerer: str = DEFAULT_ANSWERER,
                 decoding: str = "faithful") -> None:
        from sevila_tools.encoding import MemoryStore, VideoEncoder
        from sevila_tools.loading import load_runtime
        from sevila_tools.selectors import get_selector_class

        if not 1 <= int(keyframes) <= int(frames):
            raise PluginError(f"keyframes ({keyframes}) must be between 1 and frames ({frames})")
        try:
            get_selector_class(selector)
            self.runtime = load_runtime(model, checkpoint, device=device, trust_checkpoint=trust_checkpoint)
        except SevilaError as exc:
            raise PluginError(str(exc)) from None
        self.encoder = VideoEncoder(self.runtime, decoder=decoder, store=MemoryStore())
        self.frames, self.keyframes, self.selector = int(frames), int(keyframes), selector
        self.options = {"seed": 0, **(selector_options or {})}
        self.answerer, self.decoding = answerer, decoding
        self._pipelines: dict[str | None, Any] = {}

    def pipeline(self, dataset: str | None) -> Any:
        """The pipeline of a dataset's prompt style (the default style for other tasks)."""
        from sevila_tools.eval.datasets import available_datasets, get_dataset
        from sevila_tools.pipeline import Pipeline

        key = dataset if dataset in available_datasets() else None
        if key not in self._pipelines:
            style = get_dataset(key).prompt_style if key else None
            self._pipelines[key] = Pipeline(
                self.runtime, encoder=self.encoder, prompts=style, selector=self.selector,
                selector_options=self.options, answerer=self.answerer, decoding=self.decoding,
            )
        return self._pipelines[key]

    def _item(self, video: str, q: DocQuestion, answer: int | None) -> tuple[Any, Any]:
        from sevila_tools.encoding import FrameSpec
        from sevila_tools.pipeline import Query

        pipe = self.pipeline(q.dataset)
        n = pipe.selector().num_candidates(self.frames, self.keyframes)
        ev = self.encoder.encode(FrameSpec(video, n, q.start, q.end, empty_window="start_frame"))
        return pipe, (ev, Query(q.question, list(q.options), answer, q.question_id))

    def select(self, video: str, q: DocQuestion, answer: int | None = None) -> tuple[Any, Any]:
        """The selector's keyframes for one question: ``(Selection, EncodedVideo)``."""
        try:
            pipe, item = self._item(video, q, answer)
            return pipe.select([item], self.keyframes)[0], item[0]
        except SevilaError as exc:
            raise PluginError(f"{q.question_id or video}: {exc}") from None

    def answer(self, video: str, q: DocQuestion, answer: int | None = None) -> Any:
        """Selector -> keyframes -> Answerer for one multiple-choice question (a ``ChainOutput``)."""
        if len(q.options) < 2:
            raise PluginError(f"{q.question_id or video}: SeViLA answers multiple-choice questions; this document "
                              "has no options (give it an options list or A./B. lines in the prompt)")
        try:
            pipe, item = self._item(video, q, answer)
            return pipe.forward([item], self.keyframes)[0]
        except SevilaError as exc:
            raise PluginError(f"{q.question_id or video}: {exc}") from None
