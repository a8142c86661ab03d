"""sevila_tools: SeViLA (Self-Chained Video Localization-Answering) as typed tools over one BLIP-2 runtime.

>>> from sevila_tools import load_runtime, SevilaChain
>>> chain = SevilaChain(load_runtime("tiny-random"))  # doctest: +SKIP
>>> chain.forward({"video": "clip.mp4", "question": "...", "options": ["a", "b"]})  # doctest: +SKIP

Names are imported lazily so that light sub-packages (scorers, schemas) do not pull in torch/transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "SevilaChain": "sevila_tools.chain",
    "load_runtime": "sevila_tools.loading",
    "SevilaRuntime": "sevila_tools.runtime",
    "Localizer": "sevila_tools.tools",
    "Answerer": "sevila_tools.tools",
    "PseudoLabeller": "sevila_tools.tools",
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
