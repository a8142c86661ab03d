"""``sevila ablate``: a thin CLI over :func:`sevila_tools.eval.ablate.run_ablation` (tables in ``--out``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sevila_tools.cli.common import (
    DEFAULT_MODEL,
    CheckpointOpt,
    ClipModelOpt,
    DatasetOpt,
    DecoderOpt,
    DeviceOpt,
    JsonOpt,
    LongVideoOpt,
    MdetrCkptOpt,
    ModelOpt,
    OverwriteOpt,
    QuietOpt,
    ResumeOpt,
    SelectorOptionOpt,
    TrustOpt,
    console,
    err_console,
    guarded,
    print_json,
    selector_options,
    show_notice,
)
from sevila_tools.schemas import DEFAULT_ANSWERER

DEFAULT_GRID = "8:1,16:1,16:4,32:4,32:8,64:8"  # = eval.ablate.DEFAULT_GRID (not imported: keeps --help fast)


def _print_result(result) -> None:  # noqa: ANN001 - AblationResult
    from sevila_tools.eval.ablate import terminal_rows

    show_notice(result.notice)
    header, body = terminal_rows(result, width=80)
    table = Table(title=f"sevila ablate {result.dataset} ({result.questions} questions)", width=80)
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for cells in body:
        table.add_row(*cells)
    console.print(table)
    for i, note in enumerate(result.notes, 1):
        console.print(f"{i}. {note}", highlight=False)
    vit = result.vit_cache
    if vit.get("enabled"):
        console.print(f"ViT feature cache: {vit.get('hits', 0)} hits, {vit.get('misses', 0)} misses ({vit.get('dir')})",
                      highlight=False)
    console.print(f"{result.settings_run} settings run, {result.settings_resumed} resumed; all columns in "
                  f"{result.files.get('markdown')} and {result.files.get('csv')}; plot {result.files.get('png')}",
                  highlight=False)


@guarded
def ablate_cmd(
    dataset: DatasetOpt,
    annotations: Annotated[Path, typer.Option("--annotations", "-a", metavar="FILE", help="Annotation file.")],
    videos: Annotated[Path, typer.Option("--videos", metavar="DIR", help="Folder holding the videos.")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Run folder: results.* and runs/<setting>/.")],
    selector: Annotated[
        str | None,
        typer.Option("--selector", "-s", metavar="NAMES",
                     help="Selectors, comma separated (default: every registered one that can run here)."),
    ] = None,
    grid: Annotated[str, typer.Option("--grid", metavar="N:K,...", help="FRAMES:KEYFRAMES settings.")] = DEFAULT_GRID,
    answerer: Annotated[
        str, typer.Option("--answerer", metavar="NAMES", help="concat (SeViLA), voting, or concat,voting.")
    ] = DEFAULT_ANSWERER,
    decoding: Annotated[str, typer.Option("--decoding", metavar="RULE", help="faithful or teacher_forced.")] = "faithful",
    video_map: Annotated[Path | None, typer.Option("--video-map", metavar="FILE", help="{video id: path} JSON.")] = None,
    video_ext: Annotated[str, typer.Option("--video-ext", metavar="EXT", help="Extension of video files.")] = ".mp4",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")] = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="With --resume, re-run error records.")] = False,
    skip_missing: Annotated[bool, typer.Option("--skip-missing", help="Go on without missing videos.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Questions per model batch.")] = 8,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", metavar="DIR", help="ViT feature cache shared by all settings."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="No ViT feature cache.")] = False,
    prefetch: Annotated[int, typer.Option("--prefetch", min=0, help="Videos decoded ahead of the model.")] = 2,
    decode_workers: Annotated[int, typer.Option("--decode-workers", min=0, help="Decode processes (0: a thread).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed (recorded; used by the random selector).")] = 0,
    clip_model: ClipModelOpt = None,
    mdetr_checkpoint: MdetrCkptOpt = None,
    long_video: LongVideoOpt = "sliding",
    selector_option: SelectorOptionOpt = None,
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Compare keyframe selectors: every selector x FRAMES:KEYFRAMES x answerer setting, one results table."""
    from sevila_tools.eval.ablate import AblationConfig, parse_grid, parse_names, run_ablation
    from sevila_tools.selectors import available_selectors

    names = parse_names(selector) or available_selectors()
    opts = selector_options(names, clip_model, mdetr_checkpoint, False, long_video, selector_option)
    cfg = AblationConfig(
        dataset=dataset, annotations=annotations, videos=videos, out=out, video_map=video_map, video_ext=video_ext,
        selectors=selector, selector_options=opts, grid=parse_grid(grid), answerers=answerer, decoding=decoding,
        limit=limit, resume=resume, overwrite=overwrite, retry_errors=retry_errors, skip_missing=skip_missing,
        batch_size=batch_size, cache=not no_cache, cache_dir=cache_dir, prefetch=prefetch,
        decode_workers=decode_workers, seed=seed, model=model, checkpoint=checkpoint, device=device,
        decoder=decoder, trust_checkpoint=trust_checkpoint,
    )
    say = (lambda msg: None) if quiet else (lambda msg: err_console.print(msg, highlight=False, soft_wrap=True))
    result = run_ablation(cfg, progress=not (json_output or quiet), console=err_console, on_status=say)
    if json_output:
        print_json(result)
    elif not quiet:
        _print_result(result)


def register(app: typer.Typer) -> None:
    """Add ``sevila ablate`` to the main application."""
    app.command("ablate")(ablate_cmd)
