"""``concat``: SeViLA's multi-frame Answerer (all keyframes in one input)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from sevila_tools.answering.base import AnswerStrategy, Decision, register_answerer


@register_answerer
class ConcatAnswerer(AnswerStrategy):
    """SeViLA's Answerer: all keyframes in one input (``Frame i:`` prefixes), option letters at step 1."""

    name: ClassVar[str] = "concat"
    description: ClassVar[str] = "SeViLA's multi-frame Answerer reads the keyframes together."

    def decide(
        self, runtime: Any, raw_keyframes: torch.Tensor, qa_texts: list[str], num_options: int, decoding: str
    ) -> list[Decision]:
        out = runtime.answer(raw_keyframes, qa_texts, num_options, decoding)
        probs = out.probs.tolist()
        return [
            Decision(int(p), probs[i], int(out.step0_tokens[i]), bool(out.truncated[i]))
            for i, p in enumerate(out.predictions)
        ]
