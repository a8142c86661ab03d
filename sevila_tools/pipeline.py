"""The one batched pipeline: selector -> keyframes -> Answerer over (encoded video, query) pairs.

Every path (tools, chain, eval, ablate, bench, training, agents, web) calls these methods; see
``docs/architecture.md`` for the data flow."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from sevila_tools.answering import Answer, AnswerStrategy, get_answerer
from sevila_tools.encoding import EncodedVideo, VideoEncoder
from sevila_tools.errors import InputError
from sevila_tools.prompts import LETTERS, PromptStyle, get_prompt_style, open_question_prompt
from sevila_tools.schemas import DEFAULT_ANSWERER, DEFAULT_SELECTOR
from sevila_tools.selectors import Selection, Selector, SelectorInput, build_selector, options_for
from sevila_tools.timing import Timer


@dataclass
class Query:
    """A question about one encoded video: options (none for free text) and the gold index when known."""

    question: str
    options: list[str] = field(default_factory=list)
    answer: int | None = None
    question_id: str | None = None  # the dataset's id, in dataset runs (selectors that read files use it)


Item = tuple[EncodedVideo, Query]


@dataclass
class ChainOutput:
    """Forward chain output for one item."""

    selection: Selection
    answer: Answer


K = TypeVar("K", bound=Hashable)


def _groups(keys: Sequence[K]) -> dict[K, list[int]]:
    """Positions of each distinct key, in first-seen order."""
    out: dict[K, list[int]] = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out


def pseudo_labels_of(predictions: Sequence[int], gold: int | None) -> list[str]:
    """The reverse chain's rule: ``yes`` for a frame iff the Answerer, reading that frame alone, predicted the gold
    option (``docs/method.md``)."""
    return ["yes" if p == gold else "no" for p in predictions]


class Pipeline:
    """SeViLA's forward and reverse chains over batches, on one runtime and one encoder.

    Args:
        runtime: the loaded runtime.
        encoder: the :class:`VideoEncoder` (frames/features of keyframes that are not candidates come from it).
        prompts: prompt style name or object (``default``, ``next_event``, ``query_relevance``).
        selector: default selector name (or instance).
        selector_options: flat option dict; each selector takes the keys it declares.
        answerer: answer strategy name (``concat``, ``voting``) or instance.
        decoding: ``faithful`` (official) or ``teacher_forced`` letter decoding.
        timer: receives ``select``, ``gather`` and ``answer`` stages (defaults to the encoder's timer).
    """

    def __init__(
        self,
        runtime: Any,
        *,
        encoder: VideoEncoder | None = None,
        prompts: str | PromptStyle | None = None,
        selector: str | Selector = DEFAULT_SELECTOR,
        selector_options: dict[str, Any] | None = None,
        answerer: str | AnswerStrategy = DEFAULT_ANSWERER,
        decoding: str = "faithful",
        timer: Timer | None = None,
    ) -> None:
        self.runtime = runtime
        self.encoder = encoder or VideoEncoder(runtime, timer=timer)
        self.timer = timer or self.encoder.timer
        self.prompts = get_prompt_style(prompts)
        self.default_selector = selector
        self.selector_options = dict(selector_options or {})
        self.strategy = get_answerer(answerer)
        self.decoding = decoding
        self._selectors: dict[str, Selector] = {}

    # ------------------------------------------------------------------ plumbing
    def selector(self, name: str | Selector | None = None) -> Selector:
        """The (cached) selector instance for ``name`` (default: the pipeline's)."""
        name = self.default_selector if name is None else name
        if isinstance(name, Selector):
            return name
        if name not in self._selectors:
            opts = options_for(name, self.selector_options)
            self._selectors[name] = build_selector(name, self.runtime, **opts)
        return self._selectors[name]

    def texts(self, query: Query) -> tuple[str, str]:
        """(Localizer text, Answerer text) of a query in the pipeline's prompt style."""
        return self.prompts.localizer(query.question, list(query.options)), self.prompts.answerer(
            query.question, list(query.options)
        )

    def inputs(self, items: Sequence[Item]) -> list[SelectorInput]:
        """Selector inputs of the items."""
        out = []
        for ev, q in items:
            loc, qa = self.texts(q)
            out.append(
                SelectorInput(
                    video=ev.video, candidates=ev.frames, question=q.question, options=list(q.options),
                    start=ev.start, end=ev.end, raw_features=ev.raw, answer=q.answer, loc_text=loc, qa_text=qa,
                    question_id=q.question_id,
                )
            )
        return out

    # ------------------------------------------------------------------ forward chain
    def select(self, items: Sequence[Item], k: int, selector: str | Selector | None = None) -> list[Selection]:
        """Keyframes (temporal order) of each item; model-based selectors batch all items in one call."""
        sel = self.selector(selector)
        if sel.needs_gold and any(q.answer is None for _, q in items):
            raise InputError(f"the {sel.name} selector needs the gold answer (only usable in evaluation)")
        if sel.needs_question_id and any(q.question_id is None for _, q in items):
            raise InputError(f"the {sel.name} selector reads dataset question ids (only usable in dataset runs)")
        if not items:
            return []
        with self.timer.stage("select"):
            return sel.select_many(self.inputs(items), k)

    def answer(
        self, items: Sequence[Item], selections: Sequence[Selection], *, answerer: str | None = None,
        decoding: str | None = None,
    ) -> list[Answer]:
        """The Answerer on each item's selected frames (``answerer``/``decoding`` override the pipeline's)."""
        with self.timer.stage("gather"):
            feats = [self.encoder.features_at(ev, s.frame_indices) for (ev, _), s in zip(items, selections, strict=True)]
        times = [list(s.times) for s in selections]
        indices = [list(s.frame_indices) for s in selections]
        return self._answer(items, feats, indices, times, answerer, decoding)

    def answer_frames(
        self, items: Sequence[Item], *, answerer: str | None = None, decoding: str | None = None
    ) -> list[Answer]:
        """The Answerer on all frames of each encoded video (the Answerer tool: uniform frames or given times)."""
        return self._answer(items, [ev.raw for ev, _ in items], [ev.indices for ev, _ in items],
                            [ev.times for ev, _ in items], answerer, decoding)

    def _answer(
        self, items: Sequence[Item], feats: list[torch.Tensor], indices: list[list[int]],
        times: list[list[float]], answerer: str | None, decoding: str | None,
    ) -> list[Answer]:
        strategy = self.strategy if answerer is None else get_answerer(answerer)
        decoding = decoding or self.decoding
        for _, q in items:
            if not 2 <= len(q.options) <= len(LETTERS):
                raise InputError(f"the Answerer needs 2 to {len(LETTERS)} options (got {len(q.options)})")
        answers: list[Answer | None] = [None] * len(items)
        buckets = _groups([(len(q.options), f.shape[0]) for (_, q), f in zip(items, feats, strict=True)])
        for (n_opt, _), idx in buckets.items():
            qa = [self.texts(items[i][1])[1] for i in idx]
            with self.timer.stage("answer"):
                decisions = strategy.decide(self.runtime, torch.stack([feats[i] for i in idx]), qa, n_opt, decoding)
            for i, text, d in zip(idx, qa, decisions, strict=True):
                answers[i] = Answer(
                    index=d.index, probs=d.probs, strategy=strategy.name, decoding=decoding,
                    prompt=text, step0_token=self.runtime.token_str(d.step0),
                    step0_is_option=d.step0 == self.runtime.ids.option, truncated=d.truncated,
                    frame_indices=indices[i], frame_times=times[i], votes=d.votes,
                )
        return answers  # type: ignore[return-value]

    def forward(
        self, items: Sequence[Item], k: int, selector: str | Selector | None = None, *,
        answerer: str | None = None, decoding: str | None = None, selections: Sequence[Selection] | None = None,
    ) -> list[ChainOutput]:
        """Selector -> keyframes -> Answerer; the selector may revise the answer (``finalize_answer``).

        ``selections`` made earlier by :meth:`select` (same items, ``k`` and selector) are used instead of
        selecting again."""
        sel = self.selector(selector)
        selections = list(selections) if selections is not None else self.select(items, k, sel)
        answers = self.answer(items, selections, answerer=answerer, decoding=decoding)
        inputs = self.inputs(items)
        return [
            ChainOutput(s, sel.finalize_answer(inp, s, a))
            for inp, s, a in zip(inputs, selections, answers, strict=True)
        ]

    def ask(
        self, items: Sequence[Item], k: int, max_new_tokens: int = 30, selector: str | Selector | None = None
    ) -> list[tuple[Selection, str]]:
        """Open-ended questions: free text generated from each item's keyframes."""
        selections = self.select(items, k, selector)
        out = []
        for (ev, q), s in zip(items, selections, strict=True):
            raw = self.encoder.features_at(ev, s.frame_indices)
            with self.timer.stage("answer"):
                text = self.runtime.generate(raw[None], [open_question_prompt(q.question)], max_new_tokens)[0]
            out.append((s, text))
        return out

    # ------------------------------------------------------------------ per-frame passes
    def frame_logits(self, items: Sequence[Item]) -> list[tuple[list[float], list[float]]]:
        """The Localizer on every candidate: (yes logits, no logits) per item."""
        out: list[Any] = [None] * len(items)
        for _, idx in _groups([ev.num_frames for ev, _ in items]).items():
            raw = torch.stack([items[i][0].raw for i in idx])
            texts = [self.texts(items[i][1])[0] for i in idx]
            with self.timer.stage("select"):
                yes, no = self.runtime.localizer_logits(raw, texts)
            for j, i in enumerate(idx):
                out[i] = (yes[j].tolist(), no[j].tolist())
        return out

    def single_frame_predictions(self, items: Sequence[Item], decoding: str = "teacher_forced") -> list[list[int]]:
        """The Answerer on each candidate alone: the predicted option per frame (the reverse chain's input)."""
        out: list[Any] = [None] * len(items)
        keys = [(ev.num_frames, len(q.options)) for ev, q in items]
        for (t, n_opt), idx in _groups(keys).items():
            raw = torch.stack([items[i][0].raw for i in idx])
            texts = [self.texts(items[i][1])[1] for i in idx]
            with self.timer.stage("answer"):
                preds = self.runtime.frame_answers(raw, texts, n_opt, decoding).predictions
            for j, i in enumerate(idx):
                out[i] = preds[j * t : (j + 1) * t]
        return out

    def pseudo_labels(self, items: Sequence[Item]) -> list[list[str]]:
        """Reverse chain: ``yes`` for a frame iff the frozen Answerer, reading it alone, gives the gold option."""
        if any(q.answer is None for _, q in items):
            raise InputError("pseudo-labels need the gold answer of every question")
        preds = self.single_frame_predictions(items)
        return [pseudo_labels_of(row, q.answer) for (_, q), row in zip(items, preds, strict=True)]
