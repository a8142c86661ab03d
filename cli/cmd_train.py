"""Training commands: ``pretrain-localizer``, ``refine``, ``finetune``, ``pseudo-label``, ``self-refine``.

Thin: each command's options are generated from its config model in ``sevila_tools.training`` (one flag per
field, help from its description) plus one flag per hyper-parameter of ``TrainConfig``; the command builds the
config (``--config FILE.yaml``, flags, then ``KEY=VALUE``) and calls the library run. See ``docs/training.md``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sevila_tools.cli.common import JsonOpt, console, err_console, guarded, load_runtime_cli, print_json
from sevila_tools.errors import InputError

_KW = inspect.Parameter.KEYWORD_ONLY
_SCALARS = (bool, int, float, Path, str)
#: options every training command has besides its config's fields
_EXTRA = {
    "config": (Annotated[Path | None, typer.Option("--config", metavar="FILE", help="YAML file of settings "
                                                   "(fields and hyper-parameters); flags and KEY=VALUE win.")], None),
    "overrides": (Annotated[list[str] | None, typer.Argument(metavar="[KEY=VALUE]...",
                                                             help="Overrides, e.g. lr=3e-5 epochs=2.")], None),
    "quiet": (Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no status lines.")], False),
    "json_output": (JsonOpt, False),
}


def _kind(annotation: Any) -> Any:
    """``X | None`` -> X (a scalar type or a Literal, read as text)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    base = args[0] if len(args) == 1 else str
    return base if base in _SCALARS else str


def _metavar(annotation: Any, kind: Any) -> str | None:
    """N, X, a|b|c (Literal choices) or NAME."""
    choices = [a for a in typing.get_args(annotation) if typing.get_origin(a) is typing.Literal]
    if typing.get_origin(annotation) is typing.Literal or choices:
        return "|".join(map(str, typing.get_args(choices[0] if choices else annotation)))
    return {int: "N", float: "X", str: "NAME", Path: "FILE"}.get(kind)


def _option(name: str, info: Any) -> tuple[str, Any]:
    """The Typer parameter of one config field (value ``None`` = not given: the file's, recipe's or default)."""
    meta = (info.json_schema_extra or {}).get("cli", {})
    flags = list(meta.get("flags") or ["--" + name.replace("_", "-")])
    if name == "hparams":
        return "sets", Annotated[list[str] | None, typer.Option(*flags, metavar="KEY=VALUE", help=info.description)]
    kind = _kind(info.annotation)
    if kind is bool:
        flags = [f"{flags[0]}/--no-{flags[0][2:]}", *flags[1:]] if info.default is True else flags
    metavar = None if kind is bool else meta.get("metavar") or _metavar(info.annotation, kind)
    opt = typer.Option(*flags, help=info.description, metavar=metavar, hidden=bool(meta.get("hidden")),
                       show_default=False)
    return name, Annotated[kind | None, opt]


def options(model_path: str, *, hp_fields: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> Any:
    """Decorator: the command's parameters = its config's fields + the hyper-parameter flags + the extras."""
    import importlib

    from sevila_tools.training.config import hyper_parameters

    module, _, cls = model_path.rpartition(".")
    model = getattr(importlib.import_module(module), cls)
    fields = [_option(n, i) for n, i in model.model_fields.items() if n not in skip]
    hps = {k: v for k, v in hyper_parameters().items() if hp_fields is None or k in hp_fields}
    params = [inspect.Parameter(n, _KW, annotation=a, default=None) for n, a in fields]
    params += [inspect.Parameter(f"hp_{k}", _KW, annotation=_option(k, v)[1], default=None) for k, v in hps.items()]
    params += [inspect.Parameter(n, _KW, annotation=a, default=d) for n, (a, d) in _EXTRA.items()]

    def wrap(fn: Any) -> Any:
        @functools.wraps(fn)
        def command(**kw: Any) -> Any:
            hp = {k[3:]: kw.pop(k) for k in list(kw) if k.startswith("hp_") and kw[k] is not None}
            return fn(model, kw, hp)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return guarded(command)

    return wrap


def _build(model: Any, kw: dict[str, Any], hp: dict[str, Any], **fixed: Any) -> Any:
    """The config: ``--config`` file < flags < ``KEY=VALUE``; a missing required field names its flag."""
    from pydantic import ValidationError

    from sevila_tools.training.runconfig import load_run_config

    pairs = (kw.pop("sets") or []) + (kw.pop("overrides") or [])
    try:
        return load_run_config(model, kw.pop("config"), pairs, **fixed, **kw, hparams=hp)
    except ValidationError as exc:
        missing = [str(e["loc"][0]) for e in exc.errors() if e.get("type") == "missing"]
        if not missing:
            raise
        name = missing[0]
        flags = (model.model_fields[name].json_schema_extra or {}).get("cli", {}).get("flags") or [name]
        raise InputError(f"missing option {flags[0]} (or {name}: in --config)") from None


def _call(run_cls: str, model: Any, kw: dict[str, Any], hp: dict[str, Any], command: str, **fixed: Any) -> Any:
    """Build the config, then run the library run with this command's printing policy."""
    from sevila_tools.training import make_accelerator, run

    quiet, as_json = kw.pop("quiet"), kw.pop("json_output")
    cfg = _build(model, kw, hp, **fixed)
    acc = make_accelerator(cfg.device)
    main = acc.is_main_process

    def say(msg: str) -> None:
        if main and (not quiet or msg.startswith("warning:")):
            err_console.print(msg, highlight=False, soft_wrap=True, markup=False)

    loader = functools.partial(load_runtime_cli, quiet=as_json or quiet or not main)
    result = getattr(run, run_cls)(cfg, accelerator=acc, loader=loader, progress=not quiet, say=say,
                                   command=command).run()
    return (result if main else None), as_json


def _print_train(data: dict[str, Any]) -> None:
    table = Table(title=f"sevila {data['task']}: {data['out_dir']}", show_header=False)
    for key in ("checkpoint", "weights", "complete", "epochs_completed", "steps", "first_loss", "last_loss"):
        table.add_row(key, str(data[key]))
    table.add_row("epoch losses", ", ".join(f"{x:.4f}" for x in data["epoch_losses"]))
    if data["best"]:
        best = data["best"]
        table.add_row("best", f"epoch {best['epoch'] + 1}: {best['metric']} {best['value']:.2f}")
    table.add_row("deviations", ", ".join(d["option"] for d in data["deviations"]) or "none")
    console.print(table)
    if not data["complete"]:
        console.print(f"stopped early: continue with the same command plus --resume (--out {data['out_dir']})")


def _train(task: str, command: str, model: Any, kw: dict[str, Any], hp: dict[str, Any]) -> None:
    result, as_json = _call("TrainRun", model, kw, hp, command, task=task)
    if result is not None and as_json:
        print_json(result)
    elif result is not None:
        _print_train(result.to_dict())


# ----------------------------------------------------------------------------------------------- commands
_TRAIN = "sevila_tools.training.runconfig.TrainRunConfig"


@options(_TRAIN, skip=("task", "labels"))
def pretrain_cmd(model: Any, kw: dict[str, Any], hp: dict[str, Any]) -> None:
    """Localizer pre-training on span annotations (QVHighlights): a frame is 'yes' iff its time lies in a
    relevant window (recipe pretrain-qvhighlights)."""
    _train("pretrain", "pretrain-localizer", model, kw, hp)


@options(_TRAIN, skip=("task",))
def refine_cmd(model: Any, kw: dict[str, Any], hp: dict[str, Any]) -> None:
    """Reverse chain: train the Localizer on the frozen Answerer's per-frame pseudo-labels; it starts from
    BLIP-2's Q-Former (init=base, official) whatever Answerer is loaded (recipe refine-DATASET)."""
    _train("refine", "refine", model, kw, hp)


@options(_TRAIN, skip=("task", "labels"))
def finetune_cmd(model: Any, kw: dict[str, Any], hp: dict[str, Any]) -> None:
    """Forward chain: fine-tune the Answerer on the frozen Localizer's keyframes (recipe finetune-DATASET)."""
    _train("finetune", "finetune", model, kw, hp)


@options("sevila_tools.training.runconfig.PseudoLabelRunConfig",
         hp_fields=("epochs", "num_frames", "seed", "augment", "frozen_dropout", "batch_size", "prompts", "decoder"))
def pseudo_label_cmd(model: Any, kw: dict[str, Any], hp: dict[str, Any]) -> None:
    """Reverse chain: label the random frames of every question yes/no by whether the frozen Answerer, reading
    that frame alone, picks the gold option; one label set per refinement epoch (--epochs). Writes
    OUT/pseudo_labels.jsonl, pseudo_labels_summary.json and summary.json."""
    result, as_json = _call("PseudoLabelRun", model, kw, hp, "pseudo-label")
    if result is not None and as_json:
        print_json(result)
    if result is None or as_json:
        return
    table = Table(title=f"pseudo-labels: {result.file}")
    for col in ("question type", "records", "frames", "positive rate"):
        table.add_column(col)
    for qtype, row in (result.model_extra or {}).get("by_qtype", {}).items():
        table.add_row(qtype, str(row["records"]), str(row["frames"]), f"{row['positive_rate']:.3f}")
    table.add_row("all", str(result.records), str(result.frames), f"{result.positive_rate:.3f}")
    console.print(table)
    console.print(f"{(result.model_extra or {}).get('records_without_positive')} label sets have no positive frame")


@options("sevila_tools.training.runconfig.SelfRefineRunConfig")
def self_refine_cmd(model: Any, kw: dict[str, Any], hp: dict[str, Any]) -> None:
    """The paper's order: pre-train the Localizer (with --pretrain-annotations), then per iteration pseudo-label
    with the current Answerer -> refine the Localizer -> fine-tune the Answerer on its keyframes (--order readme:
    fine-tune first). Flags apply to every stage, STAGE.KEY=VALUE to one (pretrain, finetune, refine)."""
    result, as_json = _call("SelfRefineRun", model, kw, hp, "self-refine")
    if result is not None and as_json:
        print_json(result)
    if result is None or as_json:
        return
    table = Table(title=f"self-refinement ({result.order} order)")
    for col in ("iteration", "positive rate", "refine loss", "finetune loss", "validation", "weights"):
        table.add_column(col)
    for rec in result.iterations:
        val, last = rec.get("validation"), rec.get(rec["order"][-1], {})
        table.add_row(str(rec["iteration"]), f"{rec.get('pseudo_labels', {}).get('positive_rate', 0):.3f}",
                      str(rec.get("refine", {}).get("last_loss")), str(rec.get("finetune", {}).get("last_loss")),
                      f"{val['metric']} {val['value']:.2f}" if val else "", str(last.get("weights")))
    console.print(table)
    if not result.complete:
        console.print("stopped early: continue with the same command plus --resume")


def _help(fn: Any) -> str:
    """Command help from a docstring: paragraphs kept, line breaks inside a paragraph removed."""
    return "\n\n".join(" ".join(p.split()) for p in (fn.__doc__ or "").strip().split("\n\n"))


def register(app: typer.Typer) -> None:
    """Add the training commands to the main ``sevila`` app."""
    for name, fn in (
        ("pseudo-label", pseudo_label_cmd),
        ("refine", refine_cmd),
        ("finetune", finetune_cmd),
        ("pretrain-localizer", pretrain_cmd),
        ("self-refine", self_refine_cmd),
    ):
        app.command(name, help=_help(fn))(fn)
