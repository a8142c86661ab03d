"""Typer commands generated from pydantic configs: one flag per field, ``--config FILE`` and ``KEY=VALUE``.

A command is a :class:`Command`: its config models (imported when the command is built, so ``sevila --help`` stays
fast), a run function taking :class:`Args`, and options (``--config``, ``-q``, ``--json``). Each field gives its help
(``description``) and may carry ``json_schema_extra={"cli": {...}}`` (or :class:`sevila_tools.schemas.CLI`):
``flags``, ``metavar``, ``argument``, ``hidden``, ``envvar``, ``help`` (instead of the description), ``plugin`` (a
registry whose names the help lists) and,
on a nested model, ``fields`` (``{name: help}`` of the nested fields that get flags). ``docs/cli.md`` has the rules.
"""

from __future__ import annotations

import importlib
import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel

#: field names whose values are plugin names, and the registry the help lists
PLUGIN_FIELDS = {"selector": "selectors", "selectors": "selectors", "answerer": "answerers", "answerers": "answerers",
                 "dataset": "datasets", "prompts": "prompt_styles", "task": "training_tasks"}
_SCALARS = (str, int, float, Path, bool)


def cli_meta(info: Any) -> dict[str, Any]:
    """The ``cli`` metadata of a pydantic field (dict form or :class:`~sevila_tools.schemas.CLI`)."""
    extra = info.json_schema_extra
    if isinstance(extra, dict):
        return dict(extra.get("cli") or {})
    return dict(getattr(extra, "cli", None) or {})


def _unwrap(ann: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return ann


def resolve(ref: Any) -> Any:
    """``"package.module:Name"`` -> the object (other values unchanged)."""
    if isinstance(ref, str):
        module, _, name = ref.partition(":")
        return getattr(importlib.import_module(module), name)
    return ref


@dataclass
class Param:
    """One command-line parameter and the config field (dotted ``key``) it fills."""

    key: str
    flags: list[str]
    kind: Any = str
    default: Any = None
    help: str = ""
    metavar: str | None = None
    argument: bool = False
    hidden: bool = False
    envvar: str | None = None
    many: bool = False  # repeatable option -> list
    pairs: bool = False  # KEY=VALUE items -> dict
    required: bool = False

    @property
    def ident(self) -> str:
        return "p_" + self.key.replace(".", "__")

    def annotation(self) -> Any:
        """The ``Annotated[type, typer.Option(...)]`` of this parameter; numbers stay text here so that the config
        parses them (one error style: ``--at must be a number (got 'x')``)."""
        kind = self.kind if self.kind in (bool, Path) else str
        kind = list[kind] if self.many else kind
        if self.argument:
            spec = typer.Argument(metavar=self.metavar, help=self.help, show_default=False)
            return Annotated[kind if self.required else kind | None, spec]
        show = self.default not in (None, [], {}, "") and not self.many
        spec = typer.Option(*self.flags, help=self.help, metavar=None if self.kind is bool else self.metavar,
                            envvar=self.envvar, hidden=self.hidden, show_default=show)
        return Annotated[kind | None, spec]


def _metavar(name: str, kind: Any, meta: dict[str, Any]) -> str:
    if meta.get("metavar"):
        return str(meta["metavar"])
    if typing.get_origin(kind) is Literal:
        return "|".join(map(str, typing.get_args(kind)))
    if name in PLUGIN_FIELDS:
        return "NAME"
    if kind is Path:
        return "DIR" if name in ("out", "videos") or name.endswith("_dir") else "FILE"
    return {int: "N", float: "X"}.get(kind, "TEXT")


def _plugin_help(name: str, meta: dict[str, Any]) -> str:
    kind = meta.get("plugin") or PLUGIN_FIELDS.get(name)
    if not kind:
        return ""
    from sevila_tools.plugins import registry

    return " " + registry(kind).help("One of: ")


def field_param(key: str, name: str, info: Any, meta: dict[str, Any], help_text: str | None = None) -> Param:
    """The parameter of one scalar/list/dict field."""
    ann = _unwrap(info.annotation)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    flags = list(meta.get("flags") or ["--" + name.replace("_", "-")])
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    text = help_text if help_text is not None else meta.get("help", info.description or "")
    p = Param(key, flags, help=text + _plugin_help(
        name, meta), argument=bool(meta.get("argument")), hidden=bool(meta.get("hidden")),
        envvar=meta.get("envvar"), required=info.is_required(), default=default)
    if ann is bool:
        p.kind = bool
        if not meta.get("flags") or (default is True and "/" not in "".join(flags)):
            p.flags = [f"{flags[0]}/--no-{flags[0][2:]}"]
    elif origin in (list, tuple) and args and _unwrap(args[0]) in _SCALARS[:4]:
        p.kind, p.many = _unwrap(args[0]), True
    elif origin is dict:
        p.kind, p.many, p.pairs, p.metavar = str, True, True, "KEY=VALUE"
    elif ann in _SCALARS:
        p.kind = ann
    elif not isinstance(default, str):
        p.default = None  # text parsed by the config; its description names the default
    p.metavar = p.metavar or _metavar(name, ann if ann in _SCALARS or typing.get_origin(ann) is Literal else str,
                                      meta)
    if p.many and not p.argument:
        p.help += " (repeat)"
    return p


def model_params(model: type[BaseModel], prefix: str = "", exclude: set[str] | frozenset[str] = frozenset()) -> list[Param]:
    """Parameters of every field of ``model`` (nested models: the fields their ``cli.fields`` name)."""
    out: list[Param] = []
    for name, info in model.model_fields.items():
        key, meta = prefix + name, cli_meta(info)
        if key in exclude or name == "selector_options":
            continue
        ann = _unwrap(info.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for sub, text in (meta.get("fields") or {}).items():
                out.append(field_param(f"{key}.{sub}", sub, ann.model_fields[sub], {}, text))
            continue
        if meta.get("hidden") and not prefix:
            continue
        out.append(field_param(key, name, info, meta))
    return out


@dataclass
class Command:
    """A command built from config models; ``run`` receives the parsed :class:`Args`."""

    name: str
    run: Callable[[Any], None]  # receives the parsed Args (cli/args.py)
    models: tuple[Any, ...] = ()
    config_file: bool = False  # --config FILE and positional KEY=VALUE overrides
    quiet: bool = False  # -q/--quiet (progress and status lines only)
    json: bool = True
    selector_block: bool = False  # the selector option flags (from the selectors registry)
    extra: tuple[Param, ...] = ()
    exclude: frozenset[str] = frozenset()
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def help(self) -> str:
        return inspect.getdoc(self.run) or ""

    def params(self) -> list[Param]:
        """Every parameter in order: arguments, the models' fields, the extras, the selector block."""
        seen: dict[str, Param] = {}
        for model in map(resolve, self.models):
            for p in model_params(model, exclude=self.exclude):
                seen.setdefault(p.key, p)
        for p in self.extra:
            seen.setdefault(p.key, p)
        params = list(seen.values())
        for p in params:
            if p.key in self.defaults:
                p.default, p.required = self.defaults[p.key], False
            if self.config_file:  # positional words are KEY=VALUE settings here: arguments become options
                p.argument = False
                if p.required:
                    p.required, p.help = False, p.help + " Required (here or in --config)."
        if self.selector_block:
            params += selector_params()
        from sevila_tools.schemas import ModelOptions

        return sorted(params, key=lambda p: (not p.argument, p.key in ModelOptions.model_fields))


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(items: list[str], what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (JSON values, else text); one-line error otherwise."""
    from sevila_tools.errors import InputError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{what} needs KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


def set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """``raw["a"]["b"] = value`` for ``key="a.b"`` (dicts created on the way)."""
    *parents, last = key.split(".")
    for part in parents:
        raw = raw.setdefault(part, {})
    raw[last] = value


def selector_params() -> list[Param]:
    """The selector options as parameters: one flag per option a selector asks a flag for (help from the option
    and the selectors declaring it), plus ``--selector-option KEY=VALUE`` for every other key."""
    from sevila_tools.plugins import selectors

    flagged: dict[str, Param] = {}
    keys: set[str] = set()
    for cls in map(selectors.__getitem__, selectors.names()):
        for key, info in cls.Options.model_fields.items():
            keys.add(key)
            meta = cli_meta(info)
            if meta.get("flags") and key not in flagged:
                flagged[key] = field_param(f"selector_options.{key}", key, info, meta)
                flagged[key].default, flagged[key].required, flagged[key].help = meta.get("default"), False, ""
            if key in flagged:
                first = flagged[key].help or f"{info.description} Selectors: "
                flagged[key].help = first + ("" if first.endswith(": ") else ", ") + cls.name
    other = Param("selector_options", ["--selector-option"], many=True, pairs=True, metavar="KEY=VALUE",
                  help="Any selector option as KEY=VALUE, or SELECTOR.KEY=VALUE for one selector only (repeat); "
                  f"keys: {', '.join(sorted(keys))}.")
    return [*flagged.values(), other]


#: every generated command by name, in the order of ``sevila --help``
COMMANDS: dict[str, Command] = {}


def command(name: str, **options: Any) -> Callable[[Callable[[Any], None]], Command]:
    """Decorator: register ``run(args)`` as the command ``name`` (options: the fields of :class:`Command`)."""

    def wrap(run: Callable[[Any], None]) -> Command:
        COMMANDS[name] = Command(name, run, **options)
        return COMMANDS[name]

    return wrap


def config_command(name: str, config: Any, run: Any, help: str, render: Any = None, **options: Any) -> Command:
    """A command that validates ``config`` and prints what ``run(cfg, ...)`` returns, for a library run written
    the house way (``run(cfg, *, progress=True, on_status=None) -> summary model``); ``config``, ``run`` and
    ``render`` may be ``"module:name"`` strings (imported when the command is used)."""

    def call(args: Any) -> None:
        fn = resolve(run)
        offered = {"progress": args.progress, "on_status": args.say, "on_warning": args.warn}
        accepted = inspect.signature(fn).parameters
        args.emit(fn(args.config(), **{k: v for k, v in offered.items() if k in accepted}), resolve(render))

    call.__doc__ = help
    COMMANDS[name] = Command(name, call, models=(config,), **options)
    return COMMANDS[name]


__all__ = ["COMMANDS", "Command", "Param", "cli_meta", "command", "config_command", "model_params", "parse_pairs",
           "resolve", "selector_params", "set_path"]
