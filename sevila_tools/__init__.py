"""sevila_tools: SeViLA (Self-Chained Video Localization-Answering) as typed tools over one BLIP-2 runtime.

Exports resolve lazily, so light sub-packages do not import torch; the package map is ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0.dev0"  # the one place the version is written (pyproject reads it); see CHANGELOG.md

_EXPORTS = {
    "SevilaChain": "sevila_tools.chain",
    "load_runtime": "sevila_tools.loading",
    "SevilaRuntime": "sevila_tools.runtime",
    "Localizer": "sevila_tools.tools",
    "Answerer": "sevila_tools.tools",
    "PseudoLabeller": "sevila_tools.tools",
    "encode_video": "sevila_tools.encoding",
    "EncodedVideo": "sevila_tools.encoding",
    "FrameSpec": "sevila_tools.encoding",
    "VideoEncoder": "sevila_tools.encoding",
    "MemoryStore": "sevila_tools.encoding",
    "DiskStore": "sevila_tools.encoding",
    "Pipeline": "sevila_tools.pipeline",
    "Query": "sevila_tools.pipeline",
    "SevilaError": "sevila_tools.errors",
    "InputError": "sevila_tools.errors",
    "VideoError": "sevila_tools.errors",
    "ModelLoadError": "sevila_tools.errors",
    "CheckpointError": "sevila_tools.errors",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sevila_tools' has no attribute {name!r}")


__all__ = [*sorted(_EXPORTS), "__version__"]
