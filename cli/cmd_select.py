"""``sevila select``: a thin CLI over :func:`sevila_tools.eval.select.run_select` (``docs/frames.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
from sevila_tools.schemas import DEFAULT_SELECTOR

FileOpt = Annotated[Path, typer.Option("--annotations", "-a", metavar="FILE", help="Official annotation file or SeViLA JSON.")]
OutOpt = Annotated[Path, typer.Option("--out", metavar="DIR", help="Run folder: frames.jsonl, summary.json, log.txt.")]


@guarded
def select_cmd(
    dataset: DatasetOpt,
    annotations: FileOpt,
    videos: Annotated[Path, typer.Option("--videos", metavar="DIR", help="Folder holding the videos.")],
    out: OutOpt,
    video_map: Annotated[Path | None, typer.Option("--video-map", metavar="FILE",
                                                   help="{video id: relative path} JSON (NExT-QA map file).")] = None,
    video_ext: Annotated[str, typer.Option("--video-ext", metavar="EXT", help="Extension appended to video stems.")] = ".mp4",
    selector: Annotated[str, typer.Option("--selector", "-s", metavar="NAME",
                                          help="Keyframe selector (see `sevila selectors`).")] = DEFAULT_SELECTOR,
    frames: Annotated[int | None, typer.Option("--frames", "-n", min=1, max=256,
                                               help="Candidate frames (default: the dataset's, 32 or 75).")] = None,
    keyframes: Annotated[int, typer.Option("--keyframes", "-k", min=1, max=64, help="Keyframes kept.")] = 4,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")] = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="With --resume, re-run error records.")] = False,
    skip_missing: Annotated[bool, typer.Option("--skip-missing", help="Go on without missing or unreadable videos.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Questions per model batch.")] = 8,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", metavar="DIR", help="Feature cache folder.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the feature cache.")] = False,
    decode_workers: Annotated[int, typer.Option("--decode-workers", min=0, help="Decode in this many processes.")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed (used by random selectors).")] = 0,
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
    """Select keyframes for every question of a dataset into RUN/frames.jsonl (for any Video-LLM)."""
    from sevila_tools.eval.select import SelectConfig, run_select

    opts = selector_options([selector], clip_model, mdetr_checkpoint, trust_checkpoint, long_video, selector_option)
    cfg = SelectConfig(
        dataset=dataset, annotations=annotations, videos=videos, out=out, video_map=video_map, video_ext=video_ext,
        selector=selector, selector_options=opts, frames=frames, keyframes=keyframes, limit=limit, resume=resume,
        overwrite=overwrite, retry_errors=retry_errors, skip_missing=skip_missing, batch_size=batch_size,
        cache=not no_cache, cache_dir=cache_dir, decode_workers=decode_workers, seed=seed, model=model,
        checkpoint=checkpoint, device=device, decoder=decoder, trust_checkpoint=trust_checkpoint,
    )
    say = (lambda msg: None) if quiet else (lambda msg: err_console.print(msg, highlight=False, soft_wrap=True))
    summary = run_select(cfg, progress=not quiet, console=err_console, on_status=say)
    if not summary.is_main_process:
        return
    if json_output:
        print_json(summary)
    elif not quiet:
        show_notice(summary.notice)
        console.print(f"{summary.frames_file}: {summary.records} questions with frames, {summary.errors} errors "
                      f"({summary.resumed} resumed, {summary.processed} selected now in {summary.elapsed_s:.1f} s)",
                      highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``sevila select`` to the main application."""
    app.command("select")(select_cmd)
