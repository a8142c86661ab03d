"""``sevila eval``: a thin CLI over :func:`sevila_tools.eval.runner.run_eval` (multi-process: ``docs/eval.md``)."""

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
from sevila_tools.schemas import DEFAULT_ANSWERER, DEFAULT_SELECTOR


def _print_summary(summary) -> None:  # noqa: ANN001 - EvalSummary
    from sevila_tools.eval.scorers import metrics_table

    conf = summary.config
    show_notice(summary.notice)
    table = Table(title=f"sevila eval {summary.dataset}", show_header=False)
    table.add_column("key")
    table.add_column("value")
    rate = "-" if summary.samples_per_s is None else f"{summary.samples_per_s:.2f} samples/s"
    rows = [
        ("output", summary.predictions_file + (f" (errors: {summary.errors_file})" if summary.errors_file else "")),
        (
            "samples",
            f"{summary.samples} selected, {summary.runnable} runnable, {summary.skipped_missing} skipped "
            f"(missing video), {summary.resumed} resumed",
        ),
        (
            "this run",
            f"{summary.processed} processed in {summary.elapsed_s:.1f} s ({rate}, batch "
            f"{summary.batch_size}, {summary.world_size} process(es))",
        ),
        (
            "records",
            f"{summary.predictions} predictions, {summary.errors} errors "
            f"({summary.errors_this_run} this run)",
        ),
    ]
    cache = summary.cache
    if cache.get("enabled"):
        rows.append(
            (
                "feature cache",
                f"{cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses, "
                f"{cache.get('writes', 0)} written ({cache.get('dir')})",
            )
        )
    else:
        rows.append(("feature cache", f"off ({cache.get('decoded_videos', 0)} videos decoded)"))
    rows += [
        ("model", f"{conf.get('model')} / checkpoint {conf.get('checkpoint')}"),
        (
            "selector",
            f"{conf.get('selector')} ({conf.get('frames')} frames"
            + (
                f", {conf.get('keyframes')} keyframes, {conf.get('decoding')}, {conf.get('answerer')})"
                if conf.get("keyframes")
                else ")"
            ),
        ),
        (
            "device",
            f"{conf.get('device')}"
            + (f" ({conf.get('gpu')})" if conf.get("gpu") else "")
            + f", precision {conf.get('precision')}",
        ),
        ("versions", ", ".join(f"{k} {v}" for k, v in conf.get("versions", {}).items() if v)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    for err in summary.first_errors:
        err_console.print(f"error record: {err['qid']}: {err['error']}", highlight=False)
    if summary.metrics is not None:
        console.print(metrics_table(summary.metrics))
    if summary.metrics_note:
        console.print(f"[yellow]note:[/yellow] {summary.metrics_note}")


@guarded
def eval_cmd(
    dataset: DatasetOpt,
    annotations: Annotated[
        Path, typer.Option("--annotations", "-a", metavar="FILE", help="Official annotation file or SeViLA JSON.")
    ],
    videos: Annotated[Path, typer.Option("--videos", metavar="DIR", help="Folder holding the videos.")],
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Run folder: predictions.jsonl, summary.json, log.txt.")
    ],
    video_map: Annotated[
        Path | None,
        typer.Option("--video-map", metavar="FILE", help="{video id: relative path} JSON (NExT-QA map file)."),
    ] = None,
    video_ext: Annotated[str, typer.Option("--video-ext", metavar="EXT", help="Extension appended to video stems.")] = ".mp4",
    selector: Annotated[
        str, typer.Option("--selector", "-s", metavar="NAME", help="Keyframe selector (see `sevila selectors`).")
    ] = DEFAULT_SELECTOR,
    frames: Annotated[
        int | None,
        typer.Option("--frames", "-n", min=1, max=256, help="Candidate frames (default: the dataset's, 32 or 75)."),
    ] = None,
    keyframes: Annotated[int, typer.Option("--keyframes", "-k", min=1, max=64, help="Keyframes kept.")] = 4,
    answerer: Annotated[str, typer.Option("--answerer", metavar="NAME", help="concat (SeViLA) or voting.")] = DEFAULT_ANSWERER,
    decoding: Annotated[str, typer.Option("--decoding", metavar="RULE", help="faithful or teacher_forced.")] = "faithful",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N samples.")] = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="With --resume, re-run error records.")] = False,
    skip_missing: Annotated[bool, typer.Option("--skip-missing", help="Go on without missing or unreadable videos.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Questions per model batch.")] = 8,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", metavar="DIR",
            help="Feature cache folder (default: $SEVILA_CACHE_DIR or ~/.cache/sevila_tools/features).",
        ),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the feature cache.")] = False,
    prefetch: Annotated[int, typer.Option("--prefetch", min=0, help="Videos decoded ahead of the model.")] = 2,
    decode_workers: Annotated[
        int, typer.Option("--decode-workers", min=0, help="Decode in this many processes (0: one thread).")
    ] = 0,
    span_threshold: Annotated[
        int, typer.Option("--span-threshold", min=0, help="Moments: longest run of 'no' frames inside one window.")
    ] = 6,
    seed: Annotated[int, typer.Option("--seed", help="Seed (recorded; used by random selectors).")] = 0,
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
    """Evaluate a dataset: pre-flight, batched predictions streamed to --out, metrics table (or --json)."""
    from sevila_tools.eval.moments import SpanConfig
    from sevila_tools.eval.runner import EvalConfig, run_eval

    opts = selector_options([selector], clip_model, mdetr_checkpoint, trust_checkpoint, long_video, selector_option)
    cfg = EvalConfig(
        dataset=dataset, annotations=annotations, videos=videos, out=out, video_map=video_map,
        video_ext=video_ext, selector=selector, selector_options=opts, frames=frames, keyframes=keyframes,
        answerer=answerer, decoding=decoding, limit=limit, resume=resume, overwrite=overwrite,
        retry_errors=retry_errors, skip_missing=skip_missing, batch_size=batch_size, cache=not no_cache,
        cache_dir=cache_dir, prefetch=prefetch, decode_workers=decode_workers,
        span=SpanConfig(span_threshold=span_threshold), seed=seed,
        model=model, checkpoint=checkpoint, device=device, decoder=decoder, trust_checkpoint=trust_checkpoint,
    )
    say = (lambda msg: None) if quiet else (lambda msg: err_console.print(msg, highlight=False, soft_wrap=True))
    summary = run_eval(cfg, progress=not quiet, console=err_console, on_status=say)
    if not summary.is_main_process:
        return
    if json_output:
        print_json(summary)
    elif not quiet:
        _print_summary(summary)


def register(app: typer.Typer) -> None:
    """Add ``sevila eval`` to the main application."""
    app.command("eval")(eval_cmd)
