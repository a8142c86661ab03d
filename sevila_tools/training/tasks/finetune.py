"""Answerer fine-tuning (the forward chain): the frozen Localizer picks the keyframes the Answerer learns on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from sevila_tools.errors import InputError
from sevila_tools.prompts import answer_target
from sevila_tools.training.tasks.base import Batch, TrainingTask, register_task
from sevila_tools.training.validation import qa_validation


@register_task
class FinetuneAnswerer(TrainingTask):
    """Trains the Answerer on the frozen Localizer's top-``num_keyframes`` of ``num_frames`` random frames
    (temporal order); target ``Option X``."""

    name: ClassVar[str] = "finetune"
    branch: ClassVar[str] = "answerer"
    description: ClassVar[str] = "Answerer fine-tuning on the frozen Localizer's keyframes."

    def check(self, samples: Sequence[Any]) -> None:
        if self.cfg.num_keyframes > self.cfg.num_frames:
            raise InputError(
                f"num_keyframes ({self.cfg.num_keyframes}) must not exceed num_frames ({self.cfg.num_frames})"
            )

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        with self.frozen():
            selections = self.pipeline.select(batch.pairs, self.cfg.num_keyframes)
        raw = torch.stack([batch.raw[i, list(s.candidate_positions)] for i, s in enumerate(selections)])
        targets = [answer_target(q.answer) for _, q in batch.pairs]
        return self.runtime.answerer_loss(raw, batch.answerer_texts(self.pipeline), targets), {}

    def validate(self, samples: Sequence[Any], accelerator: Any, bar: Any) -> dict[str, Any]:
        """The forward chain on validation questions (``val_frames`` candidates -> ``num_keyframes``) + scorer."""
        return qa_validation(self.pipeline, samples, self.cfg, accelerator, bar)
