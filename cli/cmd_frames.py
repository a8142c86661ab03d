"""``sevila convert-frames``: a thin CLI over :func:`sevila_tools.eval.convert_frames.run_convert_frames`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sevila_tools.cli.common import JsonOpt, OverwriteOpt, console, guarded, print_json


@guarded
def convert_frames_cmd(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="frames.jsonl (with --to) or their file (with --from).")],
    out: Annotated[Path, typer.Option("--out", metavar="PATH", help="Converted file (a folder for AKS).")],
    to_format: Annotated[str | None, typer.Option("--to", metavar="FORMAT",
                                                  help="Write this format: aks, bolt, tspo or videoitg.")] = None,
    from_format: Annotated[str | None, typer.Option("--from", metavar="FORMAT",
                                                    help="Read this format into frames.jsonl.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", metavar="NAME",
                                                help="Dataset of the question ids (needed with --from).")] = None,
    annotations: Annotated[Path | None, typer.Option("--annotations", "-a", metavar="FILE",
                                                     help="Annotation file: question order of AKS and VideoITG.")] = None,
    video_map: Annotated[Path | None, typer.Option("--video-map", metavar="FILE",
                                                   help="{video id: path} JSON of the annotations.")] = None,
    fps: Annotated[float | None, typer.Option("--fps", min=0.001, help="Frame rate: frame numbers to times.")] = None,
    keyframes: Annotated[int | None, typer.Option("--keyframes", "-k", min=1,
                                                  help="VideoITG: first K of each ranked list.")] = None,
    overwrite: OverwriteOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Convert SeViLA's frames.jsonl to or from BOLT, AKS, TSPO and VideoITG frame files."""
    from sevila_tools.eval.convert_frames import ConvertFramesConfig, run_convert_frames

    cfg = ConvertFramesConfig(file=file, out=out, to_format=to_format, from_format=from_format, dataset=dataset,
                              annotations=annotations, video_map=video_map, fps=fps, keyframes=keyframes,
                              overwrite=overwrite)
    summary = run_convert_frames(cfg)
    if json_output:
        print_json(summary)
        return
    console.print(f"{summary.records} questions -> {', '.join(summary.outputs)}", highlight=False)
    for note in summary.notes:
        console.print(f"note: {note}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``sevila convert-frames`` to the main application."""
    app.command("convert-frames")(convert_frames_cmd)
