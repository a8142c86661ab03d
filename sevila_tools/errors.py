"""User-facing errors: one line naming the problem, printed by the CLI before a non-zero exit
(``docs/architecture.md``, "Errors").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: what a command adds after a model that cannot load while offline
OFFLINE_HINT = "; offline? try --model tiny-random (or tiny-trained), or a local folder from `sevila convert`"


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


def _field_sentence(err: dict[str, Any], names: Mapping[str, str]) -> str:
    """One pydantic error as a plain sentence naming the field (or its flag, from ``names``)."""
    path = ".".join(str(x) for x in err.get("loc", ()) if not isinstance(x, int) and x != "__root__")
    name = names.get(path, names.get(path.split(".")[0], path))
    ctx, kind, got = err.get("ctx") or {}, err.get("type", ""), err.get("input")
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    sentences = {
        "less_than_equal": lambda: f"{name} must be at most {ctx.get('le')} (got {got})",
        "greater_than_equal": lambda: f"{name} must be at least {ctx.get('ge')} (got {got})",
        "less_than": lambda: f"{name} must be less than {ctx.get('lt')} (got {got})",
        "greater_than": lambda: f"{name} must be more than {ctx.get('gt')} (got {got})",
        "too_long": lambda: f"{name} takes at most {ctx.get('max_length')} values (got {ctx.get('actual_length')})",
        "too_short": lambda: f"{name} needs at least {ctx.get('min_length')} values (got {ctx.get('actual_length')})",
        "literal_error": lambda: f"{name} must be {ctx.get('expected')} (got {got!r})",
        "missing": lambda: f"{name} is required",
        "extra_forbidden": lambda: f"unknown setting {name!r}",
        "int_parsing": lambda: f"{name} must be a whole number (got {got!r})",
        "float_parsing": lambda: f"{name} must be a number (got {got!r})",
        "bool_parsing": lambda: f"{name} must be true or false (got {got!r})",
    }
    if kind in sentences:
        return sentences[kind]()
    return f"{name}: {msg}" if path and kind != "value_error" else msg


def error_line(exc: BaseException, names: Mapping[str, str] | None = None) -> str:
    """One readable line for any error shown to a user or an agent.

    :class:`SevilaError`: its message. A pydantic ``ValidationError``: plain sentences naming each field (``names``
    maps field paths to what the user typed, e.g. ``{"num_frames": "--frames"}``). An ``OSError``: what failed
    and on which path. Anything else: ``Type: message``.
    """
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        text = "; ".join(dict.fromkeys(_field_sentence(e, names or {}) for e in exc.errors()))  # type: ignore[arg-type]
    elif isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        text = f"{exc.strerror[:1].lower()}{exc.strerror[1:]}{where}"
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, SevilaError):
            text = f"{type(exc).__name__}: {text}"
    return text[:500]


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name when the message is empty), for messages that quote
    a library's error inside a sentence of their own."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def exit_code(exc: BaseException) -> int:
    """The exit status of a command that failed with ``exc``: the error's own, 2 for invalid settings, else 1."""
    from pydantic import ValidationError

    if isinstance(exc, SevilaError):
        return exc.exit_code
    return 2 if isinstance(exc, ValidationError) else 1


def require(module: str, extra: str, what: str) -> None:
    """Import ``module`` or raise one :class:`InputError` line naming the extra to install (also from a clone)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise InputError(f'{what} needs {module}: pip install "sevila-tools[{extra}]" (in a clone: '
                         f'.venv/bin/pip install -e ".[{extra}]")') from None
