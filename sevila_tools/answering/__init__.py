"""Answer strategies (registered plugins): how the Answerer turns a question's keyframes into one option.

Every module of this package is imported on first use, so a new strategy is one new file (``docs/extending.md``).
"""

from __future__ import annotations

import importlib
import pkgutil

from sevila_tools.answering.base import (
    ANSWER_STRATEGIES,
    Answer,
    AnswerStrategy,
    Decision,
    get_answerer,
    register_answerer,
)

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_") and _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["ANSWER_STRATEGIES", "Answer", "AnswerStrategy", "Decision", "get_answerer", "register_answerer"]
