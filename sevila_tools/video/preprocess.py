"""Model input normalisation: uint8 frames to CLIP-normalised float tensors (torch is imported on use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sevila_tools.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["CLIP_MEAN", "CLIP_STD", "preprocess"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames ``(n, H, W, 3)`` -> float32 ``(n, 3, H, W)``: ``/255``, then CLIP mean/std.

    No resizing (frames are decoded at the model size). Accepts numpy arrays or torch tensors (any device).
    """
    import torch  # noqa: PLC0415

    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if not isinstance(x, torch.Tensor):
        raise InputError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if x.dtype != torch.uint8:
        raise InputError(f"frames must be uint8, got {x.dtype}")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"frames must have shape (n, H, W, 3), got {tuple(x.shape)}")
    # NCHW layout while still uint8 (1 byte per value), one conversion, then normalise in place: the same float32
    # operations in the same order as (x / 255 - mean) / std, ~4x faster than converting a permuted view
    x = x.permute(0, 3, 1, 2).contiguous().to(torch.float32)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return x.div_(255.0).sub_(mean).div_(std)
