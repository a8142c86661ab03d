"""``sevila bench``: stage timings, peak memory and end-to-end scenarios (the code is in ``sevila_tools.benchmarks``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sevila_tools.cli.common import DecoderOpt, DeviceOpt, JsonOpt, console, err_console, guarded, print_json

ScenarioOpt = Annotated[
    str,
    typer.Option(
        "--scenario",
        metavar="PARTS",
        help="stages (per-stage timings), single (one question on one new video), dataset "
        "(NExT-QA-like throughput), comma-separated, or all.",
    ),
]
SizeOpt = Annotated[
    str,
    typer.Option(
        "--size",
        metavar="SIZE",
        help="tiny: the tiny-random preset. full: SeViLA's real architecture (ViT-g, 2 Q-Formers, "
        "Flan-T5-XL) with random weights, no download (a GPU job; on CPU a one-sample smoke run).",
    ),
]
BatchOpt = Annotated[
    str, typer.Option("--batch-sizes", metavar="B,...", help="Questions per batch (stages), e.g. 1,8.")
]
SettingsOpt = Annotated[
    str,
    typer.Option(
        "--settings",
        metavar="T:K,...",
        help="FRAMES:KEYFRAMES, e.g. 32:4,16:4,64:8 (scenarios use the first).",
    ),
]
RepeatsOpt = Annotated[
    int | None, typer.Option("--repeats", min=1, metavar="N", help="Timed runs (median reported); default 3.")
]
WarmupOpt = Annotated[
    int | None, typer.Option("--warmup", min=0, metavar="N", help="Untimed runs first; default 1.")
]
ReferenceOpt = Annotated[
    bool, typer.Option("--reference", help="Also time the official-style path and report the speed-up.")
]
DtypeVitOpt = Annotated[
    str | None, typer.Option("--vit-dtype", metavar="DTYPE", help="fp32, fp16 or bf16 (default: policy).")
]
DtypeT5Opt = Annotated[
    str | None, typer.Option("--t5-dtype", metavar="DTYPE", help="fp32, fp16 or bf16 (default: policy).")
]
VitBatchOpt = Annotated[
    int | None,
    typer.Option("--vit-batch-size", min=1, metavar="N", help="Frames per ViT call (memory knob)."),
]
T5BatchOpt = Annotated[
    int | None,
    typer.Option("--t5-batch-size", min=1, metavar="N", help="T5 sequences per call (memory knob)."),
]
VideoFramesOpt = Annotated[
    int,
    typer.Option("--video-frames", min=8, metavar="N", help="Frames of each stage-benchmark video (30 fps)."),
]
NumOptionsOpt = Annotated[
    int, typer.Option("--num-options", min=2, max=5, metavar="N", help="Options per question.")
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--decode-workers",
        min=0,
        metavar="N",
        help="Decode in this many processes (0: in-process, as sevila eval).",
    ),
]
PrefetchOpt = Annotated[
    int,
    typer.Option(
        "--prefetch", min=0, metavar="N", help="Videos decoded ahead of the model (dataset scenario)."
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", metavar="MODEL", help="Benchmark this model (folder or BLIP-2 id) instead of --size."
    ),
]
CheckpointOpt = Annotated[
    str, typer.Option("--checkpoint", "-c", metavar="CKPT", help="SeViLA weights with --model.")
]
QpcOpt = Annotated[
    int | None,
    typer.Option(
        "--questions-per-call",
        min=1,
        metavar="N",
        help="Questions per pipeline call (default: batch on GPU, 1 on CPU).",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, metavar="N", help="torch CPU threads (default: torch's choice)."),
]
VideosOpt = Annotated[
    str,
    typer.Option(
        "--videos", metavar="NAMES", help="Single-video scenario shapes: nextqa,qvhighlights,agent,long."
    ),
]
DatasetVideosOpt = Annotated[
    int, typer.Option("--dataset-videos", min=1, metavar="N", help="Videos in the dataset scenario.")
]
QpvOpt = Annotated[
    int,
    typer.Option(
        "--questions-per-video", min=1, metavar="N", help="Questions per video in the dataset scenario."
    ),
]
ScaleOpt = Annotated[
    float,
    typer.Option(
        "--duration-scale",
        min=0.001,
        metavar="X",
        help="Multiply every scenario video's length (smoke runs).",
    ),
]
VideoDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--video-dir",
        metavar="DIR",
        help="Keep scenario videos here (default ~/.cache/sevila_tools/bench-videos).",
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write the JSON report here.")]


def bench(
    scenario: ScenarioOpt = "stages",
    size: SizeOpt = "tiny",
    batch_sizes: BatchOpt = "1,8",
    settings: SettingsOpt = "32:4,16:4,64:8",
    repeats: RepeatsOpt = None,
    warmup: WarmupOpt = None,
    reference: ReferenceOpt = False,
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    decode_workers: WorkersOpt = 0,
    prefetch: PrefetchOpt = 2,
    vit_dtype: DtypeVitOpt = None,
    t5_dtype: DtypeT5Opt = None,
    vit_batch_size: VitBatchOpt = None,
    t5_batch_size: T5BatchOpt = None,
    video_frames: VideoFramesOpt = 300,
    num_options: NumOptionsOpt = 5,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = "auto",
    questions_per_call: QpcOpt = None,
    threads: ThreadsOpt = None,
    videos: VideosOpt = "nextqa,qvhighlights,agent,long",
    dataset_videos: DatasetVideosOpt = 6,
    questions_per_video: QpvOpt = 9,
    duration_scale: ScaleOpt = 1.0,
    video_dir: VideoDirOpt = None,
    out: OutOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Time each stage of the pipeline and the whole chain (peak memory), and end-to-end scenarios."""
    from sevila_tools.benchmarks.decoding import DecodeKnobs
    from sevila_tools.benchmarks.harness import parse_batch_sizes, parse_settings
    from sevila_tools.benchmarks.report import print_report
    from sevila_tools.benchmarks.runner import BenchOptions, build_runtime, parse_parts, parse_videos, run

    opts = BenchOptions(
        parts=parse_parts(scenario), size=size, model=model, checkpoint=checkpoint, device=device,
        vit_dtype=vit_dtype, t5_dtype=t5_dtype, vit_batch_size=vit_batch_size, t5_batch_size=t5_batch_size,
        settings=parse_settings(settings), batch_sizes=parse_batch_sizes(batch_sizes), repeats=repeats,
        warmup=warmup, reference=reference, knobs=DecodeKnobs(decoder, decode_workers, prefetch),
        video_frames=video_frames, num_options=num_options, questions_per_call=questions_per_call,
        videos=parse_videos(videos), dataset_videos=dataset_videos, questions_per_video=questions_per_video,
        scale=duration_scale, video_dir=video_dir,
    )  # fmt: skip
    if threads:
        import torch

        torch.set_num_threads(threads)

    def say(msg: str) -> None:
        if not json_output:
            err_console.print(f"[dim]{msg}[/dim]")

    runtime = build_runtime(opts, lambda msg: err_console.print(f"[yellow]warning:[/yellow] {msg}"))
    report = run(runtime, opts, say)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if json_output:
        print_json(report)
    else:
        print_report(report, console)
        if out is not None:
            console.print(f"report: {out}")


def register(app: typer.Typer) -> None:
    """Add ``sevila bench`` to the main application."""
    app.command("bench")(guarded(bench))
