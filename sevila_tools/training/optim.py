"""The optimizer's parameter groups: LAVIS's weight-decay rule over the trainable parameters."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sevila_tools.checkpoint import toolkit_to_lavis_key


def no_decay(name: str, param: torch.Tensor) -> bool:
    """LAVIS rule: no weight decay for ``ndim < 2`` or a (LAVIS) name containing ``bias``, ``ln`` or ``bn``."""
    lavis = toolkit_to_lavis_key(name)
    return param.ndim < 2 or "bias" in lavis or "ln" in lavis or "bn" in lavis


def decay_split(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the trainable parameters with and without weight decay."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if no_decay(name, p) else decay).append(name)
    return decay, plain


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups over the parameters that require grad: ``[decayed, not decayed]``."""
    params = dict(model.named_parameters())
    decay, plain = decay_split(model)
    return [
        {"params": [params[n] for n in decay], "weight_decay": weight_decay},
        {"params": [params[n] for n in plain], "weight_decay": 0.0},
    ]
