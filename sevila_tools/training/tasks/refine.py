"""Localizer refinement (the reverse chain): the frozen Answerer labels each frame by its single-frame answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from sevila_tools.training.tasks.base import Batch, TrainingTask, register_task
from sevila_tools.training.validation import qa_validation


@register_task
class RefineLocalizer(TrainingTask):
    """Trains the Localizer on pseudo-labels: a frame is ``yes`` iff the frozen Answerer, reading that frame
    alone (teacher-forced ``Option``), picks the gold option; labels on the fly or from a label file."""

    name: ClassVar[str] = "refine"
    branch: ClassVar[str] = "localizer"
    description: ClassVar[str] = "Localizer refinement on the frozen Answerer's per-frame pseudo-labels."
    takes_labels: ClassVar[bool] = True
    starts_localizer: ClassVar[bool] = True

    def labels(self, batch: Batch) -> list[str]:
        """The batch's frame labels: from the label file when every item has them, else the reverse chain."""
        if all(it.labels is not None for it in batch.items):
            return [lab for it in batch.items for lab in it.labels or []]
        with self.frozen():
            rows = self.pipeline.pseudo_labels(batch.pairs)
        return [lab for row in rows for lab in row]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        labels = self.labels(batch)
        loss = self.runtime.localizer_loss(batch.raw, batch.localizer_texts(self.pipeline), labels)
        return loss, {"positive_rate": labels.count("yes") / len(labels)}

    def validate(self, samples: Sequence[Any], accelerator: Any, bar: Any) -> dict[str, Any]:
        """The forward chain on validation questions (``val_frames`` candidates -> ``num_keyframes``) + scorer."""
        return qa_validation(self.pipeline, samples, self.cfg, accelerator, bar)
