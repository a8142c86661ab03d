"""Shared CLI plumbing: one-line errors, ``--debug``, common options, runtime loading, JSON output.

Every command body is wrapped with :func:`guarded`: a user error prints ``error: <one line>`` on stderr and
exits non-zero; ``--debug`` (or ``SEVILA_DEBUG=1``) shows the full traceback instead.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

from sevila_tools.errors import SevilaError

F = TypeVar("F", bound=Callable[..., Any])


def _plain_flag_help() -> None:
    """On/off flags show no ``<bool>`` type in help (as git and hf print them), arguments with a metavar show
    just that; the rest keep their type."""
    from typer import core

    original = core.TyperOption.display_type_rich

    def display(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False):
            return None
        return original(self, ctx)

    core.TyperOption.display_type_rich = display  # type: ignore[method-assign]
    arg_original = core.TyperArgument.display_type_rich

    def arg_display(self: Any, ctx: Any) -> str | None:
        return None if self.metavar else arg_original(self, ctx)  # the metavar already names the value

    core.TyperArgument.display_type_rich = arg_display  # type: ignore[method-assign]


_plain_flag_help()

console = Console()
err_console = Console(stderr=True)


class _State:
    debug: bool = os.environ.get("SEVILA_DEBUG", "") == "1"
    notice_shown: bool = False


STATE = _State()


def one_line(exc: BaseException) -> str:
    """A one-line description of an exception, for users."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
            msg = err.get("msg", "").removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return "invalid request: " + "; ".join(parts)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, SevilaError):
        text = f"{type(exc).__name__}: {text}"
    return text[:500]


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, SevilaError):
        return exc.exit_code
    if isinstance(exc, ValidationError):
        return 2
    return 1


def guarded(fn: F) -> F:
    """Decorator for command functions: user errors -> one stderr line + non-zero exit (traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the point of this wrapper
            if STATE.debug:
                raise
            err_console.print(f"[red]error:[/red] {escape(one_line(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exit_code(exc)) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: BaseModel | dict[str, Any] | list[Any]) -> None:
    """Print one JSON object on stdout (machine output)."""
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------- common options
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="tiny-random, a folder from `sevila convert`, or a BLIP-2 Flan-T5 id/folder.",
        envvar="SEVILA_MODEL",
    ),
]
CheckpointOpt = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        "-c",
        help="SeViLA weights: auto, none, a .pth/.safetensors file, or hf://owner/repo/file.",
        envvar="SEVILA_CHECKPOINT",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
DecoderOpt = Annotated[str, typer.Option("--decoder", help="Video reader: auto, decord or pyav.")]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint", help="Allow pickled objects in checkpoints (runs code: trusted files only)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
FramesOpt = Annotated[
    int, typer.Option("--frames", "-n", min=1, max=256, help="Candidate frames sampled uniformly.")
]
KeyframesOpt = Annotated[int, typer.Option("--keyframes", "-k", min=1, max=64, help="Keyframes kept.")]
StartOpt = Annotated[float | None, typer.Option("--start", min=0, help="Window start (s).")]
EndOpt = Annotated[float | None, typer.Option("--end", min=0, help="Window end (s).")]
OptionOpt = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", metavar="TEXT", help="An answer option (repeat, at most 5)."),
]
DEFAULT_MODEL = "Salesforce/blip2-flan-t5-xl"
ClipModelOpt = Annotated[
    str | None,
    typer.Option("--clip-model", metavar="ID", help="CLIP id/folder for selectors that use CLIP (option clip_model)."),
]
MdetrCkptOpt = Annotated[
    str | None,
    typer.Option("--mdetr-checkpoint", metavar="FILE",
                 help="Moment-DETR checkpoint, e.g. the official model_best.ckpt (option mdetr_checkpoint)."),
]
LongVideoOpt = Annotated[
    str,
    typer.Option("--long-video", metavar="RULE",
                 help="Videos longer than a selector's range: refuse, stride or sliding (option long_video)."),
]
SelectorOptionOpt = Annotated[
    list[str] | None,
    typer.Option("--selector-option", "-O", metavar="KEY=VALUE",
                 help="Any other selector option (repeat); `sevila selectors --json` lists each selector's keys."),
]
DatasetOpt = Annotated[
    str,
    typer.Option("--dataset", "-d", metavar="NAME", help="nextqa, star, how2qa, tvqa, vlep or qvhighlights."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or status lines (errors still print).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out (same settings only).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace what --out already holds.")]


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def selector_options(
    selectors: list[str],
    clip_model: str | None = None,
    mdetr_checkpoint: str | None = None,
    trust_checkpoint: bool = False,
    long_video: str | None = None,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """One flat option dict from the shared selector flags and ``KEY=VALUE`` pairs; each selector later takes
    the keys it declares. An explicit key that none of ``selectors`` declares is an error."""
    from sevila_tools.errors import InputError
    from sevila_tools.selectors import declared_options

    opts: dict[str, Any] = {"clip_model": clip_model, "mdetr_checkpoint": mdetr_checkpoint,
                            "trust_checkpoint": trust_checkpoint, "long_video": long_video}
    known = {k for name in selectors for k in declared_options(name)}
    for item in extra or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--selector-option needs KEY=VALUE, got {item!r}")
        if key.strip() not in known:
            valid = ", ".join(sorted(known)) or "none"
            raise InputError(f"no selector of {', '.join(selectors)} has the option {key.strip()!r} (options: {valid})")
        opts[key.strip()] = _parse_value(value)
    return {k: v for k, v in opts.items() if v is not None}


def show_notice(text: str | None) -> None:
    """Print a result's notice (e.g. random weights) unless this command already showed it."""
    if text and not STATE.notice_shown:
        console.print(f"[yellow]{text}[/yellow]")
        STATE.notice_shown = True


def load_runtime_cli(
    model: str,
    checkpoint: str = "auto",
    device: str = "auto",
    trust_checkpoint: bool = False,
    quiet: bool = False,
    note: bool = True,
) -> Any:
    """Load the runtime with a status line on stderr; ``note=False`` when the command's own output will show the
    random-weights notice (so it appears once)."""
    from sevila_tools.loading import load_runtime

    if quiet:
        return load_runtime(model, checkpoint, device=device, trust_checkpoint=trust_checkpoint)
    with err_console.status(f"loading {model} ..."):
        rt = load_runtime(model, checkpoint, device=device, trust_checkpoint=trust_checkpoint)
    if note and rt.random_weights and not STATE.notice_shown:
        err_console.print("[yellow]note:[/yellow] random weights (tiny-random preset): outputs are meaningless")
        STATE.notice_shown = True
    return rt


def video_arg(video: Path, decoder: str = "auto") -> str:
    """Check a video before any model loads: exists, is a file, decodes (one-line VideoError otherwise)."""
    from sevila_tools.video import probe

    path = str(existing_file(video, "video"))
    probe(path, decoder=decoder)  # type: ignore[arg-type]
    return path


def existing_file(path: Path, what: str = "file") -> Path:
    """Clear one-line errors for a missing path or a directory."""
    from sevila_tools.errors import InputError

    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} is a directory, expected a file: {path}")
    return path
