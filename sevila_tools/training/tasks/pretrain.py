"""Localizer pre-training: a frame is ``yes`` iff its time lies in an annotated relevant span."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from sevila_tools.errors import InputError
from sevila_tools.training.sampling import qvh_frame_labels
from sevila_tools.training.tasks.base import Batch, TrainingTask, register_task
from sevila_tools.training.validation import frame_validation


@register_task
class PretrainLocalizer(TrainingTask):
    """Trains the Localizer on span annotations (QVHighlights): T5 loss on per-frame ``yes``/``no``."""

    name: ClassVar[str] = "pretrain"
    branch: ClassVar[str] = "localizer"
    description: ClassVar[str] = "Localizer pre-training on relevant spans (frame yes/no)."
    needs_answer: ClassVar[bool] = False
    starts_localizer: ClassVar[bool] = True

    def check(self, samples: Sequence[Any]) -> None:
        if samples and not any(s.windows for s in samples):
            raise InputError(
                "localizer pre-training needs span annotations (relevant windows); these have none"
            )

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        labels = [
            lab
            for s, it in zip(batch.samples, batch.items, strict=True)
            for lab in qvh_frame_labels(it.frames.indices, it.frames.fps, s.windows)
        ]
        loss = self.runtime.localizer_loss(batch.raw, batch.localizer_texts(self.pipeline), labels)
        return loss, {"positive_rate": labels.count("yes") / len(labels)}

    def validate(self, samples: Sequence[Any], accelerator: Any, bar: Any) -> dict[str, Any]:
        """Frame-level yes/no accuracy on ``val_frames`` uniform frames per query (the official metric)."""
        return frame_validation(self.pipeline, samples, self.cfg, accelerator, bar)
