"""What a generated command's run receives (:class:`Args`) and how a :class:`Command` becomes a Typer command."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.markup import escape

from sevila_tools.cli.common import console, err_console, guarded
from sevila_tools.cli.generate import Command, Param, resolve, takes_settings
from sevila_tools.errors import InputError
from sevila_tools.schemas import parse_pairs, read_settings

_KW = inspect.Parameter.KEYWORD_ONLY
_GIVEN = ("COMMANDLINE", "ENVIRONMENT")  # click's ParameterSource names (Typer ships its own click)


def _merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
    return into


def set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """``raw["a"]["b"] = value`` for ``key="a.b"`` (dicts created on the way)."""
    *parents, last = key.split(".")
    for part in parents:
        raw = raw.setdefault(part, {})
    raw[last] = value


class Args:
    """The parsed command line of one call: the merged settings (defaults < ``--config`` < flags < ``KEY=VALUE``),
    what was given, ``--json`` / ``--quiet``, and the output helpers."""

    def __init__(self, command: Command, params: list[Param], ctx: typer.Context, values: dict[str, Any]) -> None:
        self.command, self.params = command, params
        self.json, self.quiet = bool(values.get("json_output")), bool(values.get("quiet"))
        self.progress = not self.quiet  # progress bars (--quiet silences them; results still print)
        self.raw: dict[str, Any] = {"selector_options": {}} if command.selector_block else {}
        self.given: set[str] = set()
        for key, value in command.defaults.items():
            set_path(self.raw, key, value)
        for p in params:
            if p.key.startswith("selector_options.") and p.default is not None:
                set_path(self.raw, p.key, p.default)  # a selector flag's command-line default
        if values.get("config_file") is not None:
            _merge(self.raw, read_settings(values["config_file"]))
        for p in params:
            value = values.get(p.ident)
            if value is None or (p.many and not value) or getattr(ctx.get_parameter_source(p.ident), "name", "") not in _GIVEN:
                continue
            self.given.add(p.key)
            if p.pairs:
                _merge(self.raw, {p.key: parse_pairs(value, p.flags[0])})
            else:
                set_path(self.raw, p.key, list(value) if p.many else value)
        for key, value in parse_pairs([*(values.get("sets") or []), *(values.get("overrides") or [])]).items():
            self.given.add(key)
            set_path(self.raw, key, value)
        self.option_keys = {k.partition(".")[2] for k in self.given if k.startswith("selector_options.")}
        if "selector_options" in self.given:
            self.option_keys |= set(parse_pairs(values.get("p_selector_options"), "--selector-option"))
        self._check_keys()

    def _check_keys(self) -> None:
        """Refuse settings no model of the command takes, and ``--out``-like folders that are files."""
        models = list(map(resolve, self.command.models))
        known = {p.key.split(".")[0] for p in self.params} | {name for m in models for name in m.model_fields}
        unknown = sorted(set(self.raw) - known)
        if unknown and not any(map(takes_settings, models)):
            raise InputError(f"unknown setting {unknown[0]!r} for sevila {self.command.name}; settings: "
                             f"{', '.join(sorted(known))}")
        for p in self.params:
            value = self.raw.get(p.key)
            if p.metavar == "DIR" and isinstance(value, str | Path) and Path(value).is_file():
                raise InputError(f"{p.flags[0]} is a file, expected a folder: {value}")

    def config(self, model: Any = None, **fixed: Any) -> Any:
        """Validate the settings into ``model`` (default: the command's first model): one validation."""
        model = resolve(model or self.command.models[0])
        keep = takes_settings(model)
        return model.model_validate({**{k: v for k, v in self.raw.items() if keep or k in model.model_fields},
                                     **fixed})

    def selector_options(self, selectors: list[str]) -> dict[str, Any]:
        """The merged selector options, after checking that one of ``selectors`` declares each key the user gave."""
        from sevila_tools.selectors import check_option_keys

        opts = dict(self.raw.get("selector_options") or {})
        check_option_keys(selectors, {k: opts[k] for k in self.option_keys if k in opts})
        if self.raw.get("trust_checkpoint"):
            opts.setdefault("trust_checkpoint", True)  # --trust-checkpoint covers the selectors' checkpoints too
        return opts

    def status(self, text: str | None) -> Any:
        """A spinner on stderr while a block runs (none with ``--json``, ``--quiet`` or no ``text``)."""
        return err_console.status(text) if text and not (self.json or self.quiet) else contextlib.nullcontext()

    def say(self, msg: str) -> None:
        """A status line on stderr (silenced by ``--quiet``)."""
        if not self.quiet:
            err_console.print(escape(msg), highlight=False, soft_wrap=True)

    def warn(self, msg: str) -> None:
        """A warning line on stderr (shown also with ``--quiet``)."""
        err_console.print(f"[yellow]warning:[/yellow] {escape(msg)}", highlight=False, soft_wrap=True)

    def emit(self, result: Any, render: Callable[[Any], None] | None = None) -> None:
        """The result, by the first process only: one JSON object on stdout with ``--json``, else
        ``render(result)`` (a key/value table by default)."""
        if os.environ.get("RANK", "0") != "0":
            return
        if self.json or render is None and not isinstance(result, BaseModel | dict):
            data = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        elif render is not None:
            render(result)
        else:
            from sevila_tools.cli.render import key_values

            console.print(key_values(result, f"sevila {self.command.name}"))


def flag_names(params: list[Param]) -> dict[str, str]:
    """Config field -> what the user typed for it (``num_frames`` -> ``--frames``), for error lines."""
    return {p.key: (p.metavar or p.key) if p.argument else p.flags[0].split("/")[0] for p in params}


def _option(name: str, default: Any, kind: Any, *spec: Any, argument: bool = False, **kw: Any) -> inspect.Parameter:
    make = typer.Argument if argument else typer.Option
    return inspect.Parameter(name, _KW, default=default, annotation=Annotated[kind, make(*spec, **kw)])


def _extras(command: Command) -> list[inspect.Parameter]:
    out = []
    if command.config_file:
        out += [_option("config_file", None, Path | None, "--config", metavar="FILE",
                        help="YAML or JSON file of settings (flags and KEY=VALUE win)."),
                _option("sets", None, list[str] | None, "--set", metavar="KEY=VALUE",
                        help="A setting, as a KEY=VALUE argument gives it (repeat)."),
                _option("overrides", None, list[str] | None, argument=True, metavar="[KEY=VALUE]...",
                        show_default=False, help="Settings by field name, e.g. limit=16 (nested: a.b=VALUE).")]
    if command.quiet:
        out.append(_option("quiet", False, bool, "--quiet", "-q",
                           help="No progress bars or status lines (results and errors still print)."))
    if command.json:
        out.append(_option("json_output", False, bool, "--json", help="Print one JSON object instead of tables."))
    return out


def build(command: Command) -> Callable[..., None]:
    """The Typer function of ``command``: a generated signature, one error path (:func:`guarded`)."""
    params = command.params()

    def run(ctx: typer.Context, **values: Any) -> None:
        command.run(Args(command, params, ctx, values))

    sig = [inspect.Parameter("ctx", _KW, annotation=typer.Context)]
    sig += [inspect.Parameter(p.ident, _KW, default=... if p.required else p.default if not p.many else None,
                              annotation=p.annotation()) for p in params]
    run.__signature__ = inspect.Signature(sig + _extras(command))  # type: ignore[attr-defined]
    run.__doc__ = command.help
    run.__name__ = command.name.replace("-", "_")
    return guarded(run, names=flag_names(params), resumable=any(p.key == "resume" for p in params))


def typer_app(command: Command) -> typer.Typer:
    """A Typer application holding just ``command``."""
    app = typer.Typer(rich_markup_mode=None, add_completion=False, pretty_exceptions_enable=False)
    app.command(command.name)(build(command))
    return app


def click_command(command: Command) -> Any:
    """The click command Typer makes of ``command`` (built when first used)."""
    return typer.main.get_command(typer_app(command))


__all__ = ["Args", "build", "click_command", "flag_names", "set_path", "typer_app"]
