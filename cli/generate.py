"""Typer commands generated from pydantic configs: one flag per field, ``--config FILE`` and ``KEY=VALUE``.

A :class:`Command` is its config models (imported when it is built, so ``sevila --help`` stays fast), a run taking
:class:`~sevila_tools.cli.args.Args`, and options; the field metadata it reads is described in ``docs/cli.md``.
"""

from __future__ import annotations

import importlib
import inspect
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
    return dict((extra.get("cli") if isinstance(extra, dict) else getattr(extra, "cli", None)) or {})


def _unwrap(ann: Any) -> Any:
    """``X | None`` -> ``X`` (other unions: text)."""
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
    envvar: str | None = None
    many: bool = False  # repeatable option -> list
    pairs: bool = False  # KEY=VALUE items -> dict
    required: bool = False

    @property
    def ident(self) -> str:
        return "p_" + self.key.replace(".", "__")

    def annotation(self) -> Any:
        """``Annotated[type, typer.Option(...)]``; numbers stay text here so that the config parses them (one
        error style: ``--at must be a number (got 'x')``)."""
        kind = self.kind if self.kind in (bool, Path) else str
        kind = list[kind] if self.many else kind
        if self.argument:
            spec = typer.Argument(metavar=self.metavar, help=self.help, show_default=False)
            return Annotated[kind if self.required else kind | None, spec]
        spec = typer.Option(*self.flags, help=self.help, metavar=None if self.kind is bool else self.metavar,
                            envvar=self.envvar, show_default=self.default not in (None, [], {}, "") and not self.many)
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


def field_param(key: str, name: str, info: Any, meta: dict[str, Any], help_text: str | None = None) -> Param:
    """The parameter of one scalar/list/dict field."""
    ann = _unwrap(info.annotation)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    flags = list(meta.get("flags") or ["--" + name.replace("_", "-")])
    text = help_text if help_text is not None else meta.get("help", info.description or "")
    if meta.get("plugin") or name in PLUGIN_FIELDS:
        from sevila_tools.plugins import registry

        text += " " + registry(meta.get("plugin") or PLUGIN_FIELDS[name]).help("One of: ")
    p = Param(key, flags, help=text, argument=bool(meta.get("argument")), envvar=meta.get("envvar"), required=info.is_required(),
              default=None if info.is_required() else info.get_default(call_default_factory=True))
    if ann is bool:
        p.kind = bool
        if not meta.get("flags") or (p.default is True and "/" not in "".join(flags)):
            p.flags = [f"{flags[0]}/--no-{flags[0][2:]}"]
    elif origin in (list, tuple) and args and _unwrap(args[0]) in _SCALARS[:4]:
        p.kind, p.many = _unwrap(args[0]), True
    elif origin is dict:
        p.kind, p.many, p.pairs, p.metavar = str, True, True, "KEY=VALUE"
    elif ann in _SCALARS:
        p.kind = ann
    elif not isinstance(p.default, str):
        p.default = None  # text parsed by the config; its description names the default
    p.metavar = p.metavar or _metavar(name, ann if ann in _SCALARS or typing.get_origin(ann) is Literal else str, meta)
    p.help += " (repeat)" if p.many and not p.argument else ""
    return p


def model_params(model: type[BaseModel], exclude: set[str] | frozenset[str] = frozenset()) -> list[Param]:
    """Parameters of every field of ``model``. A nested model gives flags to the fields its ``cli.fields``
    name (``{name: help}``, keys ``field.name``); a ``dict`` with ``cli.model`` holds that model's settings: the
    fields in ``cli.fields`` get flags of their own name, after the others, defaulting to the run's choice."""
    out: list[Param] = []
    settings: list[Param] = []
    for name, info in model.model_fields.items():
        meta, ann = cli_meta(info), _unwrap(info.annotation)
        if name in exclude or name == "selector_options" or meta.get("hidden"):
            continue
        if meta.get("model"):
            sub = resolve(meta["model"]).model_fields
            settings += [field_param(k, k, sub[k], cli_meta(sub[k])) for k in meta["fields"] if k not in model.model_fields]
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            out += [field_param(f"{name}.{k}", k, ann.model_fields[k], {}, text) for k, text in meta.get("fields", {}).items()]
        else:
            out.append(field_param(name, name, info, meta))
    for p in settings:
        p.default = None  # the recipe's (or the run's) value, not the model's default
    return out + settings


def takes_settings(model: type[BaseModel]) -> bool:
    """Whether ``model`` takes settings that are not its fields (a ``dict`` field with ``cli.model`` holds them)."""
    return any(cli_meta(info).get("model") for info in model.model_fields.values())


@dataclass
class Command:
    """A command built from config models; ``run`` receives the parsed :class:`~sevila_tools.cli.args.Args`."""

    name: str
    run: Callable[[Any], None]
    models: tuple[Any, ...] = ()
    config_file: bool = False  # --config FILE, --set KEY=VALUE and positional KEY=VALUE settings
    quiet: bool = False  # -q/--quiet (progress and status lines only)
    json: bool = True
    selector_block: bool = False  # the selector option flags (from the selectors registry)
    status: str | None = None  # a spinner while a config_command's run works (a run without progress of its own)
    extra: tuple[Param, ...] = ()
    exclude: frozenset[str] = frozenset()
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def help(self) -> str:
        return inspect.getdoc(self.run) or ""

    def params(self) -> list[Param]:
        """Every parameter in order: arguments, the models' fields, the extras, the selector block, the model block."""
        from sevila_tools.schemas import ModelOptions

        seen: dict[str, Param] = {}
        for p in [p for model in map(resolve, self.models) for p in model_params(model, self.exclude)] + [*self.extra]:
            seen.setdefault(p.key, p)
        params = list(seen.values())
        for p in params:
            if p.key in self.defaults:
                p.default, p.required = self.defaults[p.key], False
            if self.config_file:  # positional words are KEY=VALUE settings here: arguments become options
                p.argument = False
                if p.required:
                    p.required, p.help = False, p.help + " Required (here or in --config)."
        params += selector_params() if self.selector_block else []
        return sorted(params, key=lambda p: (not p.argument, p.key in ModelOptions.model_fields))


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
                flagged[key] = field_param(f"selector_options.{key}", key, info, meta, f"{info.description} Selectors:")
                flagged[key].default, flagged[key].required = meta.get("default"), False
            if key in flagged:
                flagged[key].help += ("" if flagged[key].help.endswith(":") else ",") + " " + cls.name
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
    the house way (``run(cfg, *, progress=True, on_status=None, on_warning=None) -> summary model``; a run that
    takes ``command`` records the command's name); ``config``, ``run`` and ``render`` may be ``"module:name"``
    strings (imported when the command is used). With ``selector_block``, the config names the selectors it
    runs (``selector_names()``)."""

    def call(args: Any) -> None:
        fn = resolve(run)
        offered = {"progress": args.progress, "on_status": args.say, "on_warning": args.warn, "command": name}
        accepted = inspect.signature(fn).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            offered = {k: v for k, v in offered.items() if k in accepted}
        cfg = args.config()
        if COMMANDS[name].selector_block:  # the options given must belong to a selector the run uses
            cfg = cfg.model_copy(update={"selector_options": args.selector_options(cfg.selector_names())})
        with args.status(COMMANDS[name].status):
            result = fn(cfg, **offered)
        args.emit(result, resolve(render))

    call.__doc__ = help
    COMMANDS[name] = Command(name, call, models=(config,), **options)
    return COMMANDS[name]


__all__ = ["COMMANDS", "Command", "Param", "cli_meta", "command", "config_command", "model_params", "resolve",
           "selector_params", "takes_settings"]
