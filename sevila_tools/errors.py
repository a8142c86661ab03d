"""User-facing errors: one line naming the problem, printed by the CLI before a non-zero exit
(``docs/architecture.md``, "Errors").
"""

from __future__ import annotations


class SevilaError(Exception):
    """Base class for errors caused by user input; the message is a single readable line."""

    exit_code: int = 1


class InputError(SevilaError):
    """Invalid request: empty question, too many options, keyframes > frames, start >= end..."""

    exit_code = 2


class VideoError(SevilaError):
    """A video is missing, is a directory, cannot be decoded or has no frames."""


class ModelLoadError(SevilaError):
    """Model weights or tokenizer cannot be found or loaded (e.g. unknown id while offline)."""


class CheckpointError(SevilaError):
    """A checkpoint does not match the expected key layout (missing/unexpected keys are named)."""
