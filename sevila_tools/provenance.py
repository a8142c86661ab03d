"""What a run records about where it ran: package versions, device, platform, checkpoint identity."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
from pathlib import Path
from typing import Any

PACKAGES = ("sevila-tools", "torch", "transformers", "accelerate", "av", "decord", "numpy", "safetensors")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Python and package versions (None when a package is not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def gpu_name(device: Any = None) -> str | None:
    """The name of ``device`` when it is a CUDA device (of the first GPU when ``device`` is None), else None."""
    import torch

    if device is None:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def checkpoint_identity(runtime: Any) -> dict[str, Any]:
    """The loaded checkpoint as a full path plus its SHA-256 (None for none or a hub reference)."""
    ckpt = runtime.info.get("checkpoint")
    path = runtime.info.get("checkpoint_path") or ckpt
    if not path or not Path(str(path)).is_file():
        return {"checkpoint": ckpt, "checkpoint_path": None, "checkpoint_sha256": None}
    real = str(Path(str(path)).resolve())
    return {"checkpoint": ckpt, "checkpoint_path": real, "checkpoint_sha256": file_sha256(real)}


def environment(runtime: Any) -> dict[str, Any]:
    """Model, checkpoint, precision, device, versions and platform of a loaded runtime."""
    dev = runtime.device
    return {
        "model": str(runtime.info.get("model")),
        **checkpoint_identity(runtime),
        "checkpoint_meta": runtime.info.get("checkpoint_meta"),
        "sources": runtime.info.get("sources"),
        "random_weights": bool(getattr(runtime, "random_weights", False)),
        "device": str(dev),
        "gpu": gpu_name(dev),
        "precision": runtime.precision.describe(),
        "versions": versions(),
        "platform": platform.platform(),
    }
