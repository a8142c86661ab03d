"""``sevila synth GENERATOR``: generate a synthetic dataset (today: ``needleqa``); options come from the
generator's config model (:class:`sevila_tools.synth.NeedleQAConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sevila_tools.cli.common import JsonOpt, QuietOpt, console, err_console, guarded, print_json
from sevila_tools.errors import InputError
from sevila_tools.synth.needleqa import NeedleQAConfig

GENERATORS = ("needleqa",)


def _option(name: str) -> Any:
    """A Typer option built from a config field: its flags, metavar and description."""
    info = NeedleQAConfig.model_fields[name]
    cli = (info.json_schema_extra or {}).get("cli", {})  # type: ignore[union-attr]
    flags = cli.get("flags") or ["--" + name.replace("_", "-")]
    return typer.Option(*flags, metavar=cli.get("metavar"), help=info.description, show_default=True)


def _default(name: str) -> Any:
    return NeedleQAConfig.model_fields[name].default


@guarded
def synth(
    generator: Annotated[str, typer.Argument(metavar="GENERATOR", help="What to generate: needleqa.")],
    out: Annotated[Path, _option("out")],
    videos: Annotated[int, _option("videos")] = _default("videos"),
    seed: Annotated[int, _option("seed")] = _default("seed"),
    duration: Annotated[float, _option("duration")] = _default("duration"),
    size: Annotated[str, _option("size")] = _default("size"),
    fps: Annotated[float, _option("fps")] = _default("fps"),
    splits: Annotated[str, _option("splits")] = _default("splits"),
    overwrite: Annotated[bool, _option("overwrite")] = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Generate a synthetic video-QA set. needleqa: videos in which one short event answers the question
    (docs/needleqa.md); the same --seed gives identical files."""
    from sevila_tools.synth import run_needleqa

    if generator not in GENERATORS:
        raise InputError(f"unknown generator {generator!r}; available: {', '.join(GENERATORS)}")
    cfg = NeedleQAConfig(out=out, videos=videos, seed=seed, duration=duration, size=size, fps=fps,
                         splits=splits, overwrite=overwrite)
    say = None if (quiet or json_output) else (lambda msg: err_console.print(msg, highlight=False))
    summary = run_needleqa(cfg, progress=not (quiet or json_output), on_status=say)
    if json_output:
        print_json(summary)
        return
    counts = ", ".join(f"{k} {v}" for k, v in summary.questions.items())
    console.print(f"needleqa (seed {summary.seed}): {summary.videos} videos, questions {counts} -> {summary.out}")


def register(app: typer.Typer) -> None:
    """Add ``sevila synth`` to the main app."""
    app.command("synth")(synth)
