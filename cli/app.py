"""The ``sevila`` command line.

Core commands live here (``localize``, ``answer``, ``convert``, ``info``, ``demo``); larger command groups live
in ``cli/cmd_*.py`` modules, each exposing ``register(app)``.
"""

from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sevila_tools.cli.common import (
    DEFAULT_MODEL,
    STATE,
    CheckpointOpt,
    ClipModelOpt,
    DecoderOpt,
    DeviceOpt,
    EndOpt,
    FramesOpt,
    JsonOpt,
    KeyframesOpt,
    LongVideoOpt,
    MdetrCkptOpt,
    ModelOpt,
    OptionOpt,
    SelectorOptionOpt,
    StartOpt,
    TrustOpt,
    console,
    err_console,
    guarded,
    load_runtime_cli,
    print_json,
    selector_options,
    show_notice,
    video_arg,
)
from sevila_tools.errors import InputError
from sevila_tools.schemas import DEFAULT_SELECTOR

app = typer.Typer(
    name="sevila",
    help="SeViLA keyframe localization and video question answering.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from sevila_tools import __version__

        console.print(f"sevila-tools {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """SeViLA: Localizer -> Answerer on BLIP-2, as tools, CLI and agent integrations."""
    STATE.notice_shown = False  # once per command
    if debug:
        STATE.debug = True


def _print_localization(loc, answer=None) -> None:  # noqa: ANN001 - result models
    show_notice(loc.notice)
    table = Table(
        title=f"{loc.selector} on {Path(loc.video).name}: {loc.question}",
        caption="score: the selector's ranking score (localizer: raw first-step 'yes' logit); "
        "p(yes): softmax over the (no, yes) logits; *: keyframe",
    )
    for col in ("#", "frame", "time (s)", "score", "p(yes)", "key"):
        table.add_column(col, justify="right" if col != "key" else "center")
    for f in loc.frames:
        table.add_row(
            str(f.position),
            str(f.frame_index),
            f"{f.time:.2f}",
            "" if f.score is None else f"{f.score:.3f}",
            "" if f.yes_prob is None else f"{f.yes_prob:.3f}",
            "[bold green]*[/bold green]" if f.keyframe else "",
        )
    console.print(table)
    times = ", ".join(f"{k.time:.2f}s (frame {k.frame_index})" for k in loc.keyframes)
    console.print(f"keyframes: {times}")
    if answer is not None:
        probs = Table(title="answer")
        for col in ("option", "text", "prob"):
            probs.add_column(col)
        for i, (text, p) in enumerate(zip(answer.options, answer.option_probs, strict=True)):
            mark = " <" if i == answer.answer_index else ""
            probs.add_row("ABCDE"[i], text, f"{p:.3f}{mark}")
        console.print(probs)
        console.print(f"answer: [bold]({answer.answer_letter}) {answer.answer_text}[/bold]")


@app.command()
@guarded
def localize(
    video: Annotated[Path, typer.Argument(metavar="VIDEO", help="Video file.")],
    question: Annotated[str, typer.Argument(metavar="QUESTION", help="Question about the video.")],
    option: OptionOpt = None,
    frames: FramesOpt = 32,
    keyframes: KeyframesOpt = 4,
    start: StartOpt = None,
    end: EndOpt = None,
    selector: Annotated[
        str, typer.Option("--selector", "-s", metavar="NAME", help="Keyframe selector (see `sevila selectors`).")
    ] = DEFAULT_SELECTOR,
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    clip_model: ClipModelOpt = None,
    mdetr_checkpoint: MdetrCkptOpt = None,
    long_video: LongVideoOpt = "sliding",
    selector_option: SelectorOptionOpt = None,
    json_output: JsonOpt = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", metavar="PNG", help="Write a PNG: scores over time + keyframes.")
    ] = None,
) -> None:
    """Score sampled frames, keep the top keyframes; with --option also answer."""
    from sevila_tools.chain import SevilaChain
    from sevila_tools.schemas import ForwardRequest, LocalizeRequest
    from sevila_tools.selectors import get_selector_class

    options = list(option or [])
    get_selector_class(selector)
    fields = dict(
        video=video_arg(video, decoder),
        question=question,
        options=options,
        num_frames=frames,
        num_keyframes=keyframes,
        start=start,
        end=end,
        selector=selector,
    )
    if len(options) == 1:
        raise InputError("give at least 2 options to answer (or none to only localize)")
    req = ForwardRequest(**fields) if options else LocalizeRequest(**fields)
    chain = SevilaChain(
        load_runtime_cli(model, checkpoint, device, trust_checkpoint, quiet=json_output, note=False),
        decoder,
        selector_options=selector_options(
            [selector], clip_model, mdetr_checkpoint, trust_checkpoint, long_video, selector_option
        ),
    )
    if options:
        result = chain.forward(req)
        loc, ans = result.localization, result.answer
    else:
        result = loc = chain.localizer(req)
        ans = None
    if plot is not None:
        from sevila_tools.plotting import plot_localization

        plot_localization(loc, plot, decoder=decoder)
        err_console.print(f"plot written to {plot}")
    if json_output:
        print_json(result)
    else:
        _print_localization(loc, ans)


def _check_answer_flags(at: list[float] | None, frames: int | None, start: float | None, end: float | None) -> None:
    """``--at`` picks the frames itself: refuse flags it would silently ignore or contradict."""
    if not at:
        return
    if frames is not None:
        raise InputError("--at and --frames exclude each other (--at reads exactly the frames at those times)")
    outside = [t for t in at if (start is not None and t < start) or (end is not None and t > end)]
    if outside:
        raise InputError(f"--at {outside[0]} is outside the window --start {start} --end {end}")


@app.command()
@guarded
def answer(
    video: Annotated[Path, typer.Argument(metavar="VIDEO", help="Video file.")],
    question: Annotated[str, typer.Argument(metavar="QUESTION", help="Question about the video.")],
    option: OptionOpt = None,
    frames: Annotated[
        int | None, typer.Option("--frames", "-n", min=1, max=64, help="Uniform frames (default 4).")
    ] = None,
    at: Annotated[
        list[float] | None, typer.Option("--at", metavar="SEC", help="Read the frame at this time (s); repeat.")
    ] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    decoding: Annotated[str, typer.Option(metavar="RULE", help="faithful or teacher_forced.")] = "faithful",
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Answer a multiple-choice question from uniform frames or frames at given times (no Localizer)."""
    from sevila_tools.schemas import AnswerRequest
    from sevila_tools.tools import Answerer

    _check_answer_flags(at, frames, start, end)
    req = AnswerRequest(
        video=video_arg(video, decoder),
        question=question,
        options=list(option or []),
        num_frames=frames or 4,
        timestamps=at,
        start=start,
        end=end,
        decoding=decoding,
    )
    rt = load_runtime_cli(model, checkpoint, device, trust_checkpoint, quiet=json_output, note=False)
    result = Answerer(rt, decoder=decoder)(req)
    if json_output:
        print_json(result)
        return
    show_notice(result.notice)
    console.print("frames at: " + ", ".join(f"{t:.2f}s" for t in result.frame_times))
    for i, (text, p) in enumerate(zip(result.options, result.option_probs, strict=True)):
        console.print(f"  ({'ABCDE'[i]}) {text}  p={p:.3f}{'  <' if i == result.answer_index else ''}")
    console.print(f"answer: [bold]({result.answer_letter}) {result.answer_text}[/bold]")


@app.command()
@guarded
def convert(
    out: Annotated[Path, typer.Argument(help="Output folder (must be empty or absent).")],
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Write a self-contained model folder (safetensors + configs + tokenizer) that loads offline."""
    from sevila_tools.loading import build_model, save_converted

    with err_console.status("building model ..."):
        net, tok, info = build_model(model, checkpoint, trust_checkpoint)
    folder = save_converted(net, tok, out, info)
    summary = {"folder": str(folder), "sources": info["sources"], "random_weights": info["random_weights"]}
    if json_output:
        print_json(summary)
    else:
        console.print(f"wrote {folder}")
        for part, src in info["sources"].items():
            console.print(f"  {part}: {src}")
        console.print(f"load it with: sevila localize VIDEO QUESTION --model {folder}")


@app.command()
@guarded
def info(
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Model source, precision, device and library versions."""
    import torch
    import transformers

    from sevila_tools import __version__

    rt = load_runtime_cli(model, checkpoint, device, trust_checkpoint, quiet=json_output, note=False)
    data = {
        "sevila_tools": __version__,
        "model": rt.info.get("model"),
        "checkpoint": rt.info.get("checkpoint"),
        "random_weights": rt.random_weights,
        "sources": rt.info.get("sources"),
        "device": str(rt.device),
        "precision": rt.precision.describe(),
        "parameters": sum(p.numel() for p in rt.model.parameters()),
        "token_ids": {
            "yes": rt.ids.yes,
            "no": rt.ids.no,
            "letters": list(rt.ids.letters),
            "option": rt.ids.option,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if json_output:
        print_json(data)
        return
    table = Table(title="sevila info", show_header=False)
    for k, v in _flatten(data):
        table.add_row(k, v)
    console.print(table)


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as ``key.sub`` rows; lists joined with commas; None as a dash."""
    rows: list[tuple[str, str]] = []
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += _flatten(v, key + ".")
        elif isinstance(v, list):
            rows.append((key, ", ".join(str(x) for x in v)))
        else:
            rows.append((key, "-" if v is None else str(v)))
    return rows


@app.command()
@guarded
def selectors(json_output: JsonOpt = False) -> None:
    """List the keyframe selectors with what they read and their options."""
    from sevila_tools.selectors import REGISTRY

    rows = {
        cls.name: {
            "description": cls.description,
            "needs_gold": cls.needs_gold,
            "scores_candidates": cls.scores_candidates,
            "options": {k: {"default": f.default, "description": f.description}
                        for k, f in cls.Options.model_fields.items()},
        }
        for cls in sorted(REGISTRY.values(), key=lambda c: (c.rank, c.name))
    }
    if json_output:
        print_json(rows)
        return
    for name, row in rows.items():
        gold = " [yellow](needs the gold answer)[/yellow]" if row["needs_gold"] else ""
        console.print(f"[bold]{name}[/bold]: {row['description']}{gold}")
        for key, opt in row["options"].items():
            console.print(f"    {key} (default {opt['default']!r}): {opt['description']}", highlight=False)


@app.command()
@guarded
def demo(
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Folder for the generated clip and plot.")
    ] = Path("sevila_demo"),
    model: ModelOpt = "tiny-random",
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
) -> None:
    """Generate a synthetic clip and run the forward chain on it (the `make demo` job)."""
    from sevila_tools.chain import SevilaChain
    from sevila_tools.plotting import plot_localization
    from sevila_tools.schemas import ForwardRequest
    from sevila_tools.synthetic import make_video

    folder = out
    folder.mkdir(parents=True, exist_ok=True)
    video = make_video(folder / "demo_clip.mp4", num_frames=150, fps=30)
    console.print(f"generated {video} (5 s, 30 fps, moving square)")
    chain = SevilaChain(load_runtime_cli(model, checkpoint, device, note=False))
    result = chain.forward(
        ForwardRequest(
            video=str(video),
            question="what is the square doing?",
            options=["moving left.", "moving right.", "standing still."],
            num_frames=32,
            num_keyframes=4,
        )
    )
    _print_localization(result.localization, result.answer)
    plot_localization(result.localization, folder / "demo_plot.png")
    console.print(f"plot: {folder / 'demo_plot.png'}")


COMMAND_MODULES = (
    "cmd_moments", "cmd_score", "cmd_eval", "cmd_ablate", "cmd_train", "cmd_mcp", "cmd_bench", "cmd_web",
    "cmd_select", "cmd_frames",
)
for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"sevila_tools.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"sevila_tools.cli.{_name}":
            raise
        continue
    if hasattr(_mod, "register"):
        _mod.register(app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="sevila")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
