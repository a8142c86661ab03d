"""``sevila moments``: ranked windows and saliency for a text query on any video (moment retrieval)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sevila_tools.cli.common import (
    DEFAULT_MODEL,
    CheckpointOpt,
    DecoderOpt,
    DeviceOpt,
    EndOpt,
    JsonOpt,
    ModelOpt,
    StartOpt,
    TrustOpt,
    console,
    guarded,
    load_runtime_cli,
    print_json,
    show_notice,
    video_arg,
)


@guarded
def moments_cmd(
    video: Annotated[Path, typer.Argument(metavar="VIDEO", help="Video file.")],
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What to look for, in words.")],
    frames: Annotated[int, typer.Option("--frames", "-n", min=2, max=256, help="Frames scored.")] = 75,
    start: StartOpt = None,
    end: EndOpt = None,
    max_windows: Annotated[int, typer.Option("--max-windows", min=1, max=50, help="Windows returned.")] = 10,
    span_threshold: Annotated[
        int, typer.Option("--span-threshold", min=0, help="Longest run of 'no' frames inside one window.")
    ] = 6,
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Find the moments of VIDEO that show QUERY: ranked [start, end, score] windows and 2-s saliency."""
    from sevila_tools.encoding import VideoEncoder
    from sevila_tools.eval.predict import find_moments
    from sevila_tools.schemas import MomentsRequest
    path = video_arg(video, decoder)
    req = MomentsRequest(video=path, query=query, num_frames=frames, start=start, end=end,
                         max_windows=max_windows, span_threshold=span_threshold)
    rt = load_runtime_cli(model, checkpoint, device, trust_checkpoint, quiet=json_output, note=False)
    result = find_moments(rt, req, VideoEncoder(rt, decoder=decoder))
    if json_output:
        print_json(result)
        return
    show_notice(result.notice)
    table = Table(title=f"moments of {Path(path).name} ({result.duration:.1f} s): {query}",
                  caption=f"note: {result.span_rule}")
    for col in ("#", "start (s)", "end (s)", "score"):
        table.add_column(col, justify="right")
    for i, (st, ed, score) in enumerate(result.pred_relevant_windows, 1):
        table.add_row(str(i), f"{st:.2f}", f"{ed:.2f}", f"{score:.3f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``sevila moments`` to the main application."""
    app.command("moments")(moments_cmd)
