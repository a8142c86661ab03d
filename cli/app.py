"""The ``sevila`` command line.

Generated commands (:mod:`sevila_tools.cli.commands`) are built when first used, so ``sevila --help`` imports no
model code; a ``cli/cmd_*.py`` module may add its own with ``register(app)`` and is found automatically.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from sevila_tools.cli import commands as _commands  # noqa: F401 - registers the generated commands
from sevila_tools.cli.common import STATE, console
from sevila_tools.cli.generate import COMMANDS


class _Commands(MutableMapping[str, Any]):
    """Click commands by name: the generated ones (each built on first access), then the hand-written ones."""

    def __init__(self, eager: dict[str, Any]) -> None:
        self._eager = dict(eager)

    def __getitem__(self, name: str) -> Any:
        if name not in self._eager and name in COMMANDS:
            from sevila_tools.cli.args import click_command

            self._eager[name] = click_command(COMMANDS[name])
        return self._eager[name]

    def __setitem__(self, name: str, cmd: Any) -> None:
        self._eager[name] = cmd

    def __delitem__(self, name: str) -> None:
        del self._eager[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._eager]))

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._eager))


class SevilaGroup(TyperGroup):
    """The root group: generated commands are listed by the first sentence of their help, built when called."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands)  # type: ignore[assignment]

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(n, COMMANDS[n].help.split("\n")[0].split(". ")[0].rstrip(".") if n in COMMANDS
                 else self.commands[n].get_short_help_str(200)) for n in self.list_commands(ctx)
                if n in COMMANDS or not self.commands[n].hidden]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(name="sevila", cls=SevilaGroup, help="SeViLA keyframe localization and video question answering.",
                  rich_markup_mode=None, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        from sevila_tools import __version__

        console.print(f"sevila-tools {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """SeViLA: Localizer -> Answerer on BLIP-2, as tools, CLI and agent integrations."""
    STATE.notice_shown = False  # once per command
    STATE.debug = STATE.debug or debug


for _info in pkgutil.iter_modules(sys.modules[__package__].__path__):  # generated on import, or register(app)
    if _info.name.startswith("cmd_"):
        getattr(importlib.import_module(f"{__package__}.{_info.name}"), "register", lambda app: None)(app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="sevila")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
