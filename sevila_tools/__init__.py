"""sevila_tools: SeViLA (Self-Chained Video Localization-Answering) as typed tools over one BLIP-2 runtime.

>>> from sevila_tools import load_runtime, SevilaChain
>>> chain = SevilaChain(load_runtime("tiny-random"))  # doctest: +SKIP
>>> chain.forward({"video": "clip.mp4", "question": "...", "options": ["a", "b"]})  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from sevila_tools.chain import SevilaChain
from sevila_tools.errors import CheckpointError, InputError, ModelLoadError, SevilaError, VideoError
from sevila_tools.loading import load_runtime
from sevila_tools.runtime import SevilaRuntime
from sevila_tools.tools import Answerer, Localizer, PseudoLabeller

__all__ = [
    "Answerer",
    "CheckpointError",
    "InputError",
    "Localizer",
    "ModelLoadError",
    "PseudoLabeller",
    "SevilaChain",
    "SevilaError",
    "SevilaRuntime",
    "VideoError",
    "__version__",
    "load_runtime",
]
