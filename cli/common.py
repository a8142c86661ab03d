"""Shared CLI plumbing: readable help, consoles, the one error path (:func:`guarded`), JSON output, logging.

A user error prints ``error: <one line>`` on stderr and exits non-zero; ``--debug`` (or ``SEVILA_DEBUG=1``) shows
the traceback instead. Ctrl-C prints ``interrupted`` (with the ``--resume`` hint on commands that resume).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from sevila_tools.errors import OFFLINE_HINT, ModelLoadError, error_line, exit_code

F = TypeVar("F", bound=Callable[..., Any])


def _readable_help() -> None:
    """Usage lines read ``VIDEO QUESTION`` (optional ones in brackets), an argument with a metavar shows no
    ``<type>`` (as git and hf print them), and help text never breaks a flag at its hyphens (``--val-``)."""
    from typer import core
    from typer._click import _textwrap

    def usage(self: Any) -> str:
        name = self.display_name_raw
        name = name if self.required or name.startswith("[") else f"[{name}]"
        return name + ("..." if self.nargs != 1 and not name.endswith("...") else "")

    class Wrapper(_textwrap.TextWrapper):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs, break_on_hyphens=False)

    typed = core.TyperArgument.display_type_rich
    core.TyperArgument._usage_display_name = usage  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = lambda self, ctx: None if self.metavar else typed(self, ctx)  # type: ignore
    _textwrap.TextWrapper = Wrapper  # type: ignore[misc]


_readable_help()
console = Console(soft_wrap=not sys.stdout.isatty())
err_console = Console(stderr=True)


#: per process: --debug (or SEVILA_DEBUG=1), and whether this command already showed its random-weights notice
STATE = types.SimpleNamespace(debug=os.environ.get("SEVILA_DEBUG", "") == "1", notice_shown=False)


class _TerminalLog(logging.Handler):
    """Library warnings as ``warning: ...`` lines; a video reader's fallback notes only with ``--debug`` (they still
    reach every other handler, e.g. a run's log file)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("sevila_tools.video") and record.levelno < logging.ERROR and not STATE.debug:
            return
        err_console.print(f"[yellow]{record.levelname.lower()}:[/yellow] {escape(record.getMessage())}",
                          highlight=False, soft_wrap=True)


def setup_logging() -> None:
    """Route the library's log records to the terminal handler once per process."""
    log = logging.getLogger("sevila_tools")
    if not any(isinstance(h, _TerminalLog) for h in log.handlers):
        log.addHandler(_TerminalLog(logging.WARNING))


def guarded(func: F, names: Mapping[str, str], resumable: bool) -> F:
    """``func`` with the one error path: an ``error:`` line (with the offline hint after a model that cannot
    load) and the error's exit code, or the traceback with ``--debug``; ``names`` maps config fields to their
    flags in error lines; ``resumable`` adds the ``--resume`` hint to Ctrl-C."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging()
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            err_console.print("interrupted" + (": rerun with --resume to continue" if resumable else ""), highlight=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the point of this wrapper
            if STATE.debug:
                raise
            text = error_line(exc, names)
            if isinstance(exc, ModelLoadError) and "offline" in text and "tiny-random" not in text:
                text += OFFLINE_HINT
            err_console.print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exit_code(exc)) from None

    return wrapper  # type: ignore[return-value]


def show_notice(text: str | None) -> None:
    """Print a result's notice (e.g. random weights) unless this command already showed it."""
    if text and not STATE.notice_shown:
        console.print(f"[yellow]{escape(text)}[/yellow]", highlight=False)
        STATE.notice_shown = True


__all__ = ["STATE", "console", "err_console", "guarded", "show_notice"]
