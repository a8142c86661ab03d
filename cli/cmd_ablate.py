"""``sevila ablate``: keyframe selectors x frames->keyframes x answerer on one dataset, as one table.

A thin CLI over :func:`sevila_tools.eval.ablate.run_ablation`, which runs ``sevila eval``'s runner once per
setting (sharing the ViT feature cache and the CLIP / Moment-DETR models) and writes ``results.md``,
``results.csv``, ``results.json`` and ``results.png`` into ``--out DIR`` (predictions under ``DIR/preds/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sevila_tools.cli.common import (
    DEFAULT_MODEL,
    CheckpointOpt,
    ClipModelOpt,
    DecoderOpt,
    DeviceOpt,
    JsonOpt,
    MdetrCkptOpt,
    ModelOpt,
    TrustOpt,
    console,
    err_console,
    guarded,
    print_json,
)

DEFAULT_GRID = (
    "8:1,16:1,16:4,32:4,32:8,64:8"  # = sevila_tools.eval.ablate.DEFAULT_GRID (not imported: no torch)
)


def _print_result(result) -> None:  # noqa: ANN001 - AblationResult
    if result.notice:
        console.print(f"[yellow]{result.notice}[/yellow]")
    table = Table(title=f"sevila ablate {result.dataset} ({result.questions} questions)")
    for col in ("selector", "frames→kf", "answerer", *result.columns, "n"):
        table.add_column(col, justify="left" if col in ("selector", "answerer") else "right")
    for row in result.rows:
        cells = [
            row.selector,
            f"{row.frames}→{row.keyframes}" + (" ¹" if row.selector == "uniform" else ""),
            row.answerer,
        ]
        cells += ["-" if row.display.get(c) is None else f"{row.display[c]:.2f}" for c in result.columns]
        cells.append(str(row.n))
        table.add_row(*cells)
    console.print(table)
    for i, note in enumerate(result.notes, 1):
        console.print(f"{i}. {note}", highlight=False)
    vit = result.vit_cache
    if vit.get("enabled"):
        console.print(
            f"ViT feature cache: {vit.get('hits', 0)} hits, {vit.get('misses', 0)} misses "
            f"({vit.get('dir')}); CLIP features: {result.clip_feature_cache.get('hits', 0)} reused, "
            f"{result.clip_feature_cache.get('stores', 0)} computed",
            highlight=False,
        )
    console.print(
        f"{result.settings_run} settings run, {result.settings_resumed} resumed; "
        f"tables: {result.files.get('markdown')}, {result.files.get('csv')}, {result.files.get('json')}; "
        f"plot: {result.files.get('png')}",
        highlight=False,
    )


@guarded
def ablate_cmd(
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="nextqa, star, how2qa, tvqa or vlep (multiple choice).")
    ],
    annotations: Annotated[
        Path, typer.Option("--annotations", "-a", help="Official annotation file or SeViLA JSON.")
    ],
    videos: Annotated[Path, typer.Option("--videos", help="Folder holding the videos.")],
    out: Annotated[
        Path,
        typer.Option("--out", help="Output folder: results.{md,csv,json,png} and preds/<setting>.jsonl."),
    ],
    selector: Annotated[
        str | None,
        typer.Option(
            "--selector",
            "-s",
            help="Selector or comma list (default: every registered selector; oracle only with gold "
            "answers, moment_detr only with --mdetr-checkpoint or tiny-random).",
        ),
    ] = None,
    grid: Annotated[
        str, typer.Option("--grid", help="FRAMES:KEYFRAMES settings, comma separated.")
    ] = DEFAULT_GRID,
    answerer: Annotated[
        str, typer.Option("--answerer", help="concat (SeViLA), voting, or 'concat,voting'.")
    ] = "concat",
    decoding: Annotated[str, typer.Option("--decoding", help="faithful or teacher_forced.")] = "faithful",
    video_map: Annotated[
        Path | None,
        typer.Option("--video-map", help="{video id: relative path} JSON (NExT-QA map_vid_vidorID.json)."),
    ] = None,
    video_ext: Annotated[
        str, typer.Option("--video-ext", help="Extension appended to video stems.")
    ] = ".mp4",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip finished settings; continue unfinished ones.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing per-setting predictions.")
    ] = False,
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="With --resume, re-run error records.")
    ] = False,
    skip_missing: Annotated[
        bool, typer.Option("--skip-missing", help="Go on without missing videos.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Questions per model batch.")
    ] = 8,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="ViT feature cache folder shared by all settings (default $SEVILA_CACHE_DIR or "
            "~/.cache/sevila_tools/features).",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="No ViT feature cache (every setting decodes again).")
    ] = False,
    prefetch: Annotated[int, typer.Option("--prefetch", min=0, help="Videos decoded ahead in a thread.")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed (recorded; used by the random selector).")] = 0,
    clip_model: ClipModelOpt = None,
    mdetr_checkpoint: MdetrCkptOpt = None,
    mdetr_strategy: Annotated[
        str,
        typer.Option("--mdetr-strategy", help="Moment-DETR frames: top_window_uniform or topk_saliency."),
    ] = "top_window_uniform",
    long_video: Annotated[
        str,
        typer.Option(
            "--long-video", help="Moment-DETR on videos > 150 s: sliding (default), stride or refuse."
        ),
    ] = "sliding",
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Compare keyframe selectors: every selector x FRAMES:KEYFRAMES x answerer setting, one results table."""
    from sevila_tools.eval.ablate import AblationConfig, parse_grid, run_ablation

    cfg = AblationConfig(
        dataset=dataset,
        annotations=annotations,
        videos=videos,
        out=out,
        video_map=video_map,
        video_ext=video_ext,
        selectors=selector,
        grid=parse_grid(grid),
        answerers=answerer,
        decoding=decoding,
        limit=limit,
        resume=resume,
        overwrite=overwrite,
        retry_errors=retry_errors,
        skip_missing=skip_missing,
        batch_size=batch_size,
        cache=not no_cache,
        cache_dir=cache_dir,
        prefetch=prefetch,
        seed=seed,
        model=model,
        checkpoint=checkpoint,
        device=device,
        decoder=decoder,
        trust_checkpoint=trust_checkpoint,
        clip_model=clip_model,
        mdetr_checkpoint=mdetr_checkpoint,
        mdetr_strategy=mdetr_strategy,
        long_video=long_video,
    )
    result = run_ablation(
        cfg,
        progress=not json_output,
        console=err_console,
        on_status=lambda msg: err_console.print(msg, highlight=False, soft_wrap=True),
    )
    if json_output:
        print_json(result)
    else:
        _print_result(result)


def register(app: typer.Typer) -> None:
    """Add ``sevila ablate`` to the main application."""
    app.command("ablate")(ablate_cmd)
