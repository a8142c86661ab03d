"""Answer strategies (registered plugins): how the Answerer turns a question's keyframes into one option.

Every module of this package is imported on first lookup, so a new strategy is one new file; other distributions
add strategies through the ``sevila_tools.answerers`` entry points (``docs/extending.md``).
"""

from __future__ import annotations

from sevila_tools.answering.base import (
    ANSWER_STRATEGIES,
    Answer,
    AnswerStrategy,
    Decision,
    get_answerer,
    register_answerer,
)

__all__ = ["ANSWER_STRATEGIES", "Answer", "AnswerStrategy", "Decision", "get_answerer", "register_answerer"]
