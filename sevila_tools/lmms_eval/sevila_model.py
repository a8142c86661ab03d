"""lmms-eval model ``sevila``: SeViLA's forward chain (selector -> keyframes -> Answerer) answering
multiple-choice video tasks with an option letter.

``--model sevila --model_args model=M,checkpoint=C,frames=32,keyframes=4,selector=localizer`` (plus ``device``,
``decoder``, ``trust_checkpoint``, ``answerer``, ``decoding`` and ``selector_options=k=v;k=v``).
"""

from __future__ import annotations

import math
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from sevila_tools.schemas import (
    DEFAULT_ANSWERER,
    DEFAULT_FRAMES,
    DEFAULT_KEYFRAMES,
    DEFAULT_MODEL,
    DEFAULT_SELECTOR,
)

from .common import LETTERS, PluginError, as_bool, doc_question, doc_video, parse_inner_args
from .engine import SevilaEngine


class SevilaModel(lmms):
    """SeViLA as an lmms-eval model: ``generate_until`` answers with the chosen letter, ``loglikelihood`` scores
    an option (letter or text) by the Answerer's probability."""

    is_simple = True

    def __init__(self, model: str = DEFAULT_MODEL, checkpoint: str = "auto", frames: int = DEFAULT_FRAMES,
                 keyframes: int = DEFAULT_KEYFRAMES, selector: str = DEFAULT_SELECTOR, selector_options: Any = None,
                 device: str = "auto", decoder: str = "auto", trust_checkpoint: Any = False,
                 answerer: str = DEFAULT_ANSWERER,
                 decoding: str = "faithful", batch_size: Any = 1, **kwargs: Any) -> None:
        super().__init__()
        unknown = sorted(k for k, v in kwargs.items() if v is not None and k not in ("max_batch_size",))
        if unknown:
            raise PluginError(f"the sevila model has no argument {', '.join(unknown)}")
        self.engine = SevilaEngine(
            model=str(model), checkpoint=str(checkpoint), device=str(device), decoder=str(decoder),
            trust_checkpoint=as_bool(trust_checkpoint), frames=int(frames), keyframes=int(keyframes),
            selector=str(selector), selector_options=parse_inner_args(selector_options), answerer=str(answerer),
            decoding=str(decoding),
        )
        self.batch_size_per_gpu = int(batch_size)

    def _output(self, req: Instance) -> Any:
        context, _, doc_to_visual, doc_id, task, split = req.args[:6]
        doc = self.task_dict[task][split][doc_id]
        gold = doc.get("answer") if isinstance(doc.get("answer"), int) else None
        return self.engine.answer(doc_video(doc_to_visual(doc)), doc_question(doc, context), gold)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        out = []
        for req in requests:
            result = self._output(req)
            letter = LETTERS[result.answer.index]
            out.append(letter)
            self.cache_hook.add_partial("generate_until", (req.args[0], req.args[1]), letter)
        return out

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        out = []
        for req in requests:
            context, continuation, doc_to_visual, doc_id, task, split = req.args[:6]
            doc = self.task_dict[task][split][doc_id]
            q = doc_question(doc, context)
            result = self.engine.answer(doc_video(doc_to_visual(doc)), q)
            target = str(continuation).strip().strip("().")
            if target in LETTERS[: len(q.options)]:
                i = LETTERS.index(target)
            elif target in q.options:
                i = q.options.index(target)
            else:
                raise PluginError(f"continuation {continuation!r} names no option of question {q.question_id}")
            probs = result.answer.probs
            out.append((math.log(max(probs[i], 1e-45)), i == result.answer.index))
        return out

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        return self.generate_until(requests)

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu
