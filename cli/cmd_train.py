"""Training commands: ``pseudo-label``, ``refine``, ``finetune``, ``pretrain-localizer``, ``self-refine``.

Options are declared once: the run/data/model options below, and one flag per field of
:class:`sevila_tools.training.TrainConfig` (defaults come from the recipe ``<task>-<dataset>``; ``KEY=VALUE``
arguments and ``--set KEY=VALUE`` override any field). See ``docs/training.md``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sevila_tools.cli.common import (
    DEFAULT_MODEL,
    CheckpointOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    TrustOpt,
    console,
    err_console,
    guarded,
    load_runtime_cli,
    print_json,
)
from sevila_tools.errors import InputError

_KW = inspect.Parameter.KEYWORD_ONLY

# ---------------------------------------------------------------------------------------- shared options
COMMON: dict[str, tuple[Any, Any]] = {
    "dataset": (
        Annotated[
            str, typer.Option("--dataset", "-d", help="nextqa, star, how2qa, tvqa, vlep, qvhighlights.")
        ],
        ...,
    ),
    "annotations": (
        Annotated[Path, typer.Option("--annotations", "-a", help="Training annotation file.")],
        ...,
    ),
    "out": (
        Annotated[Path, typer.Option("--out", "-O", help="Run folder (checkpoints, summary.json, logs).")],
        ...,
    ),
    "videos": (Annotated[Path | None, typer.Option("--videos", help="Folder holding the videos.")], None),
    "video_map": (
        Annotated[Path | None, typer.Option("--video-map", help="JSON {video id: path} (NExT-QA).")],
        None,
    ),
    "video_ext": (
        Annotated[str, typer.Option("--video-ext", help="Extension appended to video ids.")],
        ".mp4",
    ),
    "val_annotations": (
        Annotated[
            Path | None, typer.Option("--val-annotations", help="Validation split: evaluated every epoch.")
        ],
        None,
    ),
    "recipe": (Annotated[str | None, typer.Option("--recipe", help="Recipe name or YAML file.")], None),
    "sets": (
        Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override (repeatable).")],
        None,
    ),
    "overrides": (
        Annotated[list[str] | None, typer.Argument(metavar="[KEY=VALUE]...", help="Overrides, e.g. lr=3e-5.")],
        None,
    ),
    "limit": (
        Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N questions.")],
        None,
    ),
    "skip_missing": (
        Annotated[
            bool, typer.Option("--skip-missing", help="Skip questions whose video is missing or broken.")
        ],
        False,
    ),
    "resume": (Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")], False),
    "max_steps": (
        Annotated[
            int | None, typer.Option("--max-steps", min=1, help="Stop after N optimizer steps (resumable).")
        ],
        None,
    ),
    "workers": (
        Annotated[int, typer.Option("--workers", min=0, help="DataLoader processes decoding videos.")],
        0,
    ),
    "model": (ModelOpt, DEFAULT_MODEL),
    "checkpoint": (CheckpointOpt, "auto"),
    "device": (DeviceOpt, "auto"),
    "trust_checkpoint": (TrustOpt, False),
    "quiet": (Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no status lines.")], False),
    "json_output": (JsonOpt, False),
}
TRAIN_OPTIONS = [k for k in COMMON if k != "dataset"]
LABEL_OPTIONS = [k for k in TRAIN_OPTIONS if k not in ("val_annotations", "max_steps", "workers")]
LABEL_FIELDS = (
    "epochs",
    "num_frames",
    "seed",
    "augment",
    "frozen_dropout",
    "batch_size",
    "prompts",
    "decoder",
)


def _field_option(name: str, info: Any) -> tuple[Any, Any]:
    """A ``--flag`` for a config field (value ``None`` = the recipe's)."""
    extra = info.json_schema_extra or {}
    flag = extra.get("flag") or "--" + name.replace("_", "-")
    base = [a for a in typing.get_args(info.annotation) if a is not type(None)] or [info.annotation]
    kind = base[0] if base[0] in (int, float, bool) else str
    decls = (
        [f"{flag}/--no-{flag[2:]}"]
        if kind is bool
        else [flag] + ([extra["short"]] if extra.get("short") else [])
    )
    return Annotated[kind | None, typer.Option(*decls, help=info.description, show_default=False)], None


def options(*names: str, fields: tuple[str, ...] | None = None, dataset: bool = True) -> Any:
    """Decorator: add the named shared options and the config-field flags to a command's own parameters."""
    from sevila_tools.training import hyper_parameters

    def wrap(fn: Any) -> Any:
        own = inspect.signature(fn).parameters
        hints = typing.get_type_hints(fn, include_extras=True)
        params = [
            p.replace(annotation=hints[p.name], kind=_KW) for p in own.values() if p.kind != p.VAR_KEYWORD
        ]
        chosen = [n for n in COMMON if n in names or (dataset and n == "dataset")]
        params += [inspect.Parameter(n, _KW, annotation=COMMON[n][0], default=COMMON[n][1]) for n in chosen]
        hp = {k: v for k, v in hyper_parameters().items() if fields is None or k in fields}
        params += [
            inspect.Parameter(k, _KW, annotation=a, default=d)
            for k, (a, d) in ((k, _field_option(k, v)) for k, v in hp.items())
        ]
        params.sort(key=lambda p: p.default is not inspect.Parameter.empty and p.default is not ...)

        @functools.wraps(fn)
        def command(**kw: Any) -> Any:
            fields_given = {k: kw.pop(k) for k in list(kw) if k in hp}
            return fn(**kw, hp=fields_given)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return guarded(command)

    return wrap


# ------------------------------------------------------------------------------------------------ helpers
class _Ctx:
    """Accelerator, runtime and printing policy of one command."""

    def __init__(self, kw: dict[str, Any]) -> None:
        from sevila_tools.training import make_accelerator

        self.acc = make_accelerator(kw["device"])
        self.main = self.acc.is_main_process
        self.quiet, self.json = kw["quiet"], kw["json_output"]
        self.kw = kw
        self.rt: Any = None

    def load(self) -> None:
        from sevila_tools.training import device_string

        kw = self.kw
        silent = self.json or self.quiet or not self.main
        self.rt = load_runtime_cli(
            kw["model"],
            kw["checkpoint"],
            device_string(self.acc.device),
            kw["trust_checkpoint"],
            quiet=silent,
        )

    def say(self, msg: str) -> None:
        if self.main and not self.quiet:
            err_console.print(msg, highlight=False, soft_wrap=True)


def _config(task: str, kw: dict[str, Any], hp: dict[str, Any]) -> Any:
    from sevila_tools.eval.datasets import check_dataset
    from sevila_tools.training import parse_overrides, resolve_config

    over = {
        **{k: v for k, v in hp.items() if v is not None},
        **parse_overrides((kw.get("overrides") or []) + (kw.get("sets") or [])),
    }
    return resolve_config(task, check_dataset(kw["dataset"]), kw.get("recipe"), over)


def _samples(
    ctx: _Ctx,
    path: Path,
    needs_answer: bool,
    limit: int | None,
    dataset: str | None = None,
    videos: Path | None = None,
) -> tuple[list[Any], Any]:
    """Annotations -> usable questions, pre-flight (missing and, with --skip-missing, undecodable videos)."""
    from sevila_tools.eval.datasets import load_annotations, preflight
    from sevila_tools.training import DataReport, usable_samples

    kw = ctx.kw
    samples = load_annotations(
        dataset or kw["dataset"],
        path,
        videos_root=videos or kw["videos"],
        video_map=kw["video_map"],
        video_ext=kw["video_ext"],
    )
    usable, dropped = usable_samples(samples, needs_answer, limit)
    report = DataReport(no_answer=dropped)
    if dropped:
        ctx.say(f"{dropped} of {len(samples)} questions have no gold answer or 2-5 options and are left out")
    check = preflight(usable, check_readable=True)
    report.missing_videos, report.unreadable_videos = list(check.missing), list(check.unreadable)
    if check.missing or check.unreadable:
        if not kw["skip_missing"]:
            raise InputError(f"{check.summary()}; pass --skip-missing to go on without them")
        ctx.say(f"skipping questions whose video is missing or unreadable: {check.summary()}")
        usable = list(check.ok)
    if not usable:
        raise InputError(f"no usable questions in {path}")
    report.questions = len(usable)
    ctx.say(f"{len(usable)} questions from {path}")
    return usable, report


def _check_out(out: Path, resume: bool, marker: str) -> None:
    """Refuse (before any model loads) to start a new run over an existing one."""
    if not resume and (out / marker).exists():
        raise InputError(f"{out} already holds a run ({marker}); pass --resume or use another --out")


def _run_kw(ctx: _Ctx, command: str) -> dict[str, Any]:
    kw = ctx.kw
    extra = {
        "annotations": str(kw["annotations"].resolve()),
        "videos": str(kw["videos"].resolve()) if kw["videos"] else None,
        "limit": kw["limit"],
    }
    return dict(
        resume=kw["resume"],
        max_steps=kw.get("max_steps"),
        accelerator=ctx.acc,
        workers=kw.get("workers", 0),
        progress=not ctx.quiet,
        say=ctx.say,
        extra_hparams=extra,
        skip_bad_videos=kw["skip_missing"],
        command=command,
    )


def _print_result(ctx: _Ctx, data: dict[str, Any]) -> None:
    if not ctx.main:
        return
    if ctx.json:
        print_json(data)
        return
    table = Table(title=f"sevila {data['task']}: {data['out_dir']}", show_header=False)
    for key in ("checkpoint", "weights", "complete", "epochs_completed", "steps", "first_loss", "last_loss"):
        table.add_row(key, str(data[key]))
    table.add_row("epoch losses", ", ".join(f"{x:.4f}" for x in data["epoch_losses"]))
    if data["best"]:
        table.add_row(
            "best", f"epoch {data['best']['epoch'] + 1}: {data['best']['metric']} {data['best']['value']:.2f}"
        )
    table.add_row("deviations", ", ".join(d["option"] for d in data["deviations"]) or "none")
    console.print(table)
    if not data["complete"]:
        console.print(
            f"stopped early: continue with the same command plus --resume (--out {data['out_dir']})"
        )


def _train(
    task: str, command: str, kw: dict[str, Any], hp: dict[str, Any], labels: Path | None = None
) -> None:
    from sevila_tools.training import CHECKPOINT_NAME, get_task, train_stage

    cfg = _config(task, kw, hp)
    _check_out(kw["out"], kw["resume"], CHECKPOINT_NAME)
    ctx = _Ctx(kw)
    needs_answer = get_task(task).needs_answer
    samples, report = _samples(ctx, kw["annotations"], needs_answer, kw["limit"])
    val = _samples(ctx, kw["val_annotations"], needs_answer, None)[0] if kw["val_annotations"] else []
    if not val and cfg.validate_every_epoch:
        ctx.say(
            "note: no --val-annotations: no validation and no best checkpoint (the official run validates every epoch)"
        )
    ctx.load()
    result = train_stage(
        ctx.rt,
        samples,
        cfg,
        kw["out"],
        labels=labels,
        val_samples=val,
        data_report=report,
        **_run_kw(ctx, command),
    )
    _print_result(ctx, result.to_dict())


# ----------------------------------------------------------------------------------------------- commands
@options(*LABEL_OPTIONS, fields=LABEL_FIELDS)
def pseudo_label_cmd(
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the labels already in --out.")
    ] = False,
    **kw: Any,
) -> None:
    """Reverse chain: label the random frames of every question yes/no by whether the frozen Answerer, reading
    that frame alone, picks the gold option; one label set per refinement epoch (--epochs). Writes
    OUT/pseudo_labels.jsonl, pseudo_labels_summary.json and summary.json."""
    from sevila_tools.training import pseudo_label

    hp = kw.pop("hp")
    cfg = _config("refine", kw, hp)
    ctx = _Ctx(kw)
    samples, report = _samples(ctx, kw["annotations"], True, kw["limit"])
    ctx.load()
    summary = pseudo_label(
        ctx.rt,
        samples,
        kw["out"],
        cfg,
        accelerator=ctx.acc,
        progress_bar=not ctx.quiet,
        overwrite=overwrite,
        resume=kw["resume"],
        skip_bad_videos=kw["skip_missing"],
        data_report=report,
        say=ctx.say,
        command="pseudo-label",
    )
    if not ctx.main:
        return
    if ctx.json:
        print_json(summary)
        return
    table = Table(title=f"pseudo-labels: {summary['file']}")
    for col in ("question type", "records", "frames", "positive rate"):
        table.add_column(col)
    for qtype, row in summary["by_qtype"].items():
        table.add_row(qtype, str(row["records"]), str(row["frames"]), f"{row['positive_rate']:.3f}")
    table.add_row("all", str(summary["records"]), str(summary["frames"]), f"{summary['positive_rate']:.3f}")
    console.print(table)
    console.print(f"{summary['records_without_positive']} label sets have no positive frame")


@options(*TRAIN_OPTIONS)
def refine_cmd(
    labels: Annotated[
        Path | None, typer.Option("--labels", help="Labels from `sevila pseudo-label` (default: on the fly).")
    ] = None,
    **kw: Any,
) -> None:
    """Reverse chain: train the Localizer on the frozen Answerer's per-frame pseudo-labels (recipe refine-DATASET)."""
    _train("refine", "refine", kw, kw.pop("hp"), labels)


@options(*TRAIN_OPTIONS)
def finetune_cmd(**kw: Any) -> None:
    """Forward chain: fine-tune the Answerer on the frozen Localizer's keyframes (recipe finetune-DATASET)."""
    _train("finetune", "finetune", kw, kw.pop("hp"))


@options(*TRAIN_OPTIONS)
def pretrain_cmd(**kw: Any) -> None:
    """Localizer pre-training on span annotations (QVHighlights): a frame is 'yes' iff its time lies in a
    relevant window (recipe pretrain-qvhighlights)."""
    _train("pretrain", "pretrain-localizer", kw, kw.pop("hp"))


@options(*TRAIN_OPTIONS)
def self_refine_cmd(
    iterations: Annotated[
        int, typer.Option("--iterations", "-i", min=1, help="Self-refinement iterations.")
    ] = 1,
    pretrain_annotations: Annotated[
        Path | None,
        typer.Option("--pretrain-annotations", help="QVHighlights file: pre-train the Localizer first."),
    ] = None,
    pretrain_videos: Annotated[
        Path | None, typer.Option("--pretrain-videos", help="Videos of the pre-training set.")
    ] = None,
    pretrain_dataset: Annotated[
        str, typer.Option("--pretrain-dataset", help="Dataset of the pre-training set.")
    ] = "qvhighlights",
    **kw: Any,
) -> None:
    """Pre-train the Localizer (with --pretrain-annotations), then per iteration: fine-tune the Answerer ->
    pseudo-label -> refine the Localizer; flags apply to every stage, STAGE.KEY=VALUE to one (pretrain,
    finetune, refine)."""
    from sevila_tools.training import self_refine

    hp = kw.pop("hp")
    configs = _stage_configs(kw, hp, pretrain_dataset)
    _check_out(kw["out"], kw["resume"], "iter_1")
    ctx = _Ctx(kw)
    samples, report = _samples(ctx, kw["annotations"], True, kw["limit"])
    val = _samples(ctx, kw["val_annotations"], True, None)[0] if kw["val_annotations"] else []
    pre = []
    if pretrain_annotations is not None:
        pre = _samples(ctx, pretrain_annotations, False, None, pretrain_dataset, pretrain_videos)[0]
    else:
        ctx.say("no --pretrain-annotations: the Localizer of --checkpoint is used as the pre-trained one")
    ctx.load()
    run = _run_kw(ctx, "self-refine")
    run.pop("command")
    result = self_refine(
        ctx.rt,
        samples,
        kw["out"],
        iterations=iterations,
        pretrain=configs["pretrain"],
        finetune=configs["finetune"],
        refine=configs["refine"],
        pretrain_samples=pre,
        val_samples=val,
        command="self-refine",
        **run,
    )
    _print_self_refine(ctx, result)


def _stage_configs(kw: dict[str, Any], hp: dict[str, Any], pretrain_dataset: str) -> dict[str, Any]:
    from sevila_tools.training import parse_overrides, resolve_config

    pairs = parse_overrides((kw.get("overrides") or []) + (kw.get("sets") or []))
    shared = {k: v for k, v in {**hp, **pairs}.items() if v is not None and "." not in k}
    out = {}
    for stage, dataset in (
        ("pretrain", pretrain_dataset),
        ("finetune", kw["dataset"]),
        ("refine", kw["dataset"]),
    ):
        own = {k.split(".", 1)[1]: v for k, v in pairs.items() if k.startswith(stage + ".")}
        out[stage] = resolve_config(stage, dataset, None, {**shared, **own})
    return out


def _print_self_refine(ctx: _Ctx, result: dict[str, Any]) -> None:
    if not ctx.main:
        return
    if ctx.json:
        print_json(result)
        return
    table = Table(title="self-refinement")
    for col in ("iteration", "positive rate", "finetune loss", "refine loss", "validation", "weights"):
        table.add_column(col)
    for rec in result["iterations"]:
        val = rec.get("validation")
        table.add_row(
            str(rec["iteration"]),
            f"{rec.get('pseudo_labels', {}).get('positive_rate', 0):.3f}",
            str(rec.get("finetune", {}).get("last_loss")),
            str(rec.get("refine", {}).get("last_loss")),
            f"{val['metric']} {val['value']:.2f}" if val else "",
            str(rec.get("refine", {}).get("weights")),
        )
    console.print(table)
    if not result["complete"]:
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
