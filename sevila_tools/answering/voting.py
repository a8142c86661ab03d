"""``voting``: the single-frame Answerer on each keyframe, majority vote (a baseline of the paper)."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import torch

from sevila_tools.answering.base import AnswerStrategy, Decision, register_answerer


@register_answerer
class VotingAnswerer(AnswerStrategy):
    """Baseline: the single-frame Answerer on each keyframe, majority vote (ties: summed probability, then
    the lower option)."""

    name: ClassVar[str] = "voting"
    description: ClassVar[str] = "Each keyframe answers alone; the majority wins."

    def decide(
        self, runtime: Any, raw_keyframes: torch.Tensor, qa_texts: list[str], num_options: int, decoding: str
    ) -> list[Decision]:
        k = raw_keyframes.shape[1]
        out = runtime.frame_answers(raw_keyframes, qa_texts, num_options, decoding)
        preds, probs = out.predictions, out.probs
        decisions = []
        for i in range(raw_keyframes.shape[0]):
            votes = preds[i * k : (i + 1) * k]
            mean = probs[i * k : (i + 1) * k].mean(0).tolist()
            counts = Counter(votes)
            index = max(range(num_options), key=lambda o: (counts.get(o, 0), mean[o], -o))
            decisions.append(Decision(index, mean, int(out.step0_tokens[i * k]), bool(out.truncated[i]), votes))
        return decisions
