"""The model's modes in training, mixed precision, and the pipeline the frozen passes run through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from sevila_tools.encoding import EncodedVideo, VideoEncoder
from sevila_tools.modeling import BRANCH_MODULES
from sevila_tools.pipeline import Pipeline, Query


def other_branch(branch: str) -> str:
    """The Q-Former branch that stays frozen while ``branch`` trains."""
    return next(b for b in BRANCH_MODULES if b != branch)


def _modules(model: nn.Module, branch: str) -> list[nn.Module]:
    mods = [getattr(model, name) for name in BRANCH_MODULES[branch]]
    return [m for m in mods if isinstance(m, nn.Module)] + [model.language_model]


def set_train_modes(model: nn.Module, branch: str, dropout: bool = True) -> None:
    """Everything in eval mode except, with ``dropout``, the trained branch and T5 (train mode)."""
    model.eval()
    for mod in _modules(model, branch):
        mod.train(dropout)


@contextlib.contextmanager
def frozen_pass(model: nn.Module, branch: str, dropout: bool) -> Iterator[None]:
    """Run the frozen ``branch`` (and T5) without gradients, in train mode when ``dropout`` (the official
    trainer keeps the whole model in train mode) or in eval mode (deterministic); modes restored after."""
    saved = [(m, m.training) for m in model.modules()]
    for mod in _modules(model, branch):
        mod.train(dropout)
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in saved:
            m.training = mode


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on a GPU that supports it, ``fp16`` on other GPUs, ``fp32`` on CPU."""
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast around the trained branch's forward pass (``precision`` already resolved)."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtypes[precision])


def grad_scaler(precision: str, device: torch.device) -> Any:
    """The fp16 gradient scaler (official ``amp: True``), ``None`` for other precisions."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def build_pipeline(runtime: Any, prompts: str, decoder: str = "auto") -> Pipeline:
    """The forward/reverse chain over the runtime: Localizer selector, concat Answerer, faithful decoding."""
    encoder = VideoEncoder(runtime, decoder=decoder)
    return Pipeline(runtime, encoder=encoder, prompts=prompts, selector="localizer", answerer="concat")


def query_of(sample: Any) -> Query:
    """The pipeline query of an annotated question."""
    return Query(sample.question, list(sample.options), sample.answer)


def encoded_of(sample: Any, frames: Any, raw: torch.Tensor) -> EncodedVideo:
    """An encoded video from training frames already decoded (and cropped) plus their raw ViT features."""
    return EncodedVideo(video=sample.video, frames=frames, raw=raw, start=sample.start, end=sample.end)
