"""``sevila bench`` as one config and one run: :class:`BenchConfig` -> :func:`run_bench` -> the JSON report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _cli(metavar: str, *flags: str) -> dict[str, Any]:
    return {"cli": {"metavar": metavar, **({"flags": list(flags)} if flags else {})}}


class BenchConfig(BaseModel):
    """Everything ``sevila bench`` takes (``BENCHMARKS.md`` explains each knob); lists are comma separated."""

    model_config = ConfigDict(extra="forbid")

    scenario: str = Field("stages", description="stages (per-stage timings), single (one question on one new "
                          "video), dataset (NExT-QA-like throughput), comma separated, or all.",
                          json_schema_extra=_cli("PARTS"))
    size: Literal["tiny", "full"] = Field("tiny", description="tiny: the tiny-random preset. full: SeViLA's real "
                                          "architecture with random weights, no download (a GPU job; on CPU a "
                                          "one-sample smoke run).")
    batch_sizes: str = Field("1,8", description="Questions per batch (stages), e.g. 1,8.",
                             json_schema_extra=_cli("B,..."))
    settings: str = Field("32:4,16:4,64:8", description="FRAMES:KEYFRAMES, e.g. 32:4,16:4 (scenarios use the "
                          "first).", json_schema_extra=_cli("N:K,..."))
    repeats: int | None = Field(None, ge=1, description="Timed runs (median reported); default 3.")
    warmup: int | None = Field(None, ge=0, description="Untimed runs first; default 1.")
    reference: bool = Field(False, description="Also time the official-style path and report the speed-up.",
                            json_schema_extra={"cli": {"flags": ["--reference"]}})
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.", json_schema_extra=_cli("NAME"))
    decoder: str = Field("auto", description="Video reader: auto, decord or pyav.", json_schema_extra=_cli("NAME"))
    decode_workers: int = Field(0, ge=0, description="Decode in this many processes (0: in-process, as sevila "
                                "eval).")
    prefetch: int = Field(2, ge=0, description="Videos decoded ahead of the model (dataset scenario).")
    vit_dtype: Literal["fp32", "fp16", "bf16"] | None = Field(None, description="ViT precision (default: policy).")
    t5_dtype: Literal["fp32", "fp16", "bf16"] | None = Field(None, description="T5 precision (default: policy).")
    vit_batch_size: int | None = Field(None, ge=1, description="Frames per ViT call (memory knob).")
    t5_batch_size: int | None = Field(None, ge=1, description="T5 sequences per call (memory knob).")
    video_frames: int = Field(300, ge=8, description="Frames of each stage-benchmark video (30 fps).")
    num_options: int = Field(5, ge=2, le=5, description="Options per question.")
    model: str | None = Field(None, description="Benchmark this model (folder or BLIP-2 id) instead of --size.",
                              json_schema_extra=_cli("NAME", "--model", "-m"))
    checkpoint: str = Field("auto", description="SeViLA weights with --model.",
                            json_schema_extra=_cli("FILE", "--checkpoint", "-c"))
    questions_per_call: int | None = Field(None, ge=1, description="Questions per pipeline call (default: batch "
                                           "on GPU, 1 on CPU).")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice).")
    videos: str = Field("nextqa,qvhighlights,agent,long", description="Single-video scenario shapes.",
                        json_schema_extra=_cli("NAMES"))
    dataset_videos: int = Field(6, ge=1, description="Videos in the dataset scenario.")
    questions_per_video: int = Field(9, ge=1, description="Questions per video in the dataset scenario.")
    duration_scale: float = Field(1.0, ge=0.001, description="Multiply every scenario video's length (smoke runs).")
    video_dir: Path | None = Field(None, description="Keep scenario videos here (default "
                                   "~/.cache/sevila_tools/bench-videos).")
    out: Path | None = Field(None, description="Write the JSON report here.")

    def options(self) -> Any:
        """The parsed :class:`~sevila_tools.benchmarks.runner.BenchOptions` (one-line errors on bad lists)."""
        from .decoding import DecodeKnobs
        from .harness import parse_batch_sizes, parse_settings
        from .runner import BenchOptions, parse_parts, parse_videos

        return BenchOptions(
            parts=parse_parts(self.scenario), size=self.size, model=self.model, checkpoint=self.checkpoint,
            device=self.device, vit_dtype=self.vit_dtype, t5_dtype=self.t5_dtype, vit_batch_size=self.vit_batch_size,
            t5_batch_size=self.t5_batch_size, settings=parse_settings(self.settings),
            batch_sizes=parse_batch_sizes(self.batch_sizes), repeats=self.repeats, warmup=self.warmup,
            reference=self.reference, knobs=DecodeKnobs(self.decoder, self.decode_workers, self.prefetch),
            video_frames=self.video_frames, num_options=self.num_options, questions_per_call=self.questions_per_call,
            videos=parse_videos(self.videos), dataset_videos=self.dataset_videos,
            questions_per_video=self.questions_per_video, scale=self.duration_scale, video_dir=self.video_dir,
        )  # fmt: skip


def run_bench(
    cfg: BenchConfig, *, on_status: Callable[[str], None] | None = None, on_warning: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the scenarios of ``cfg``; the report is returned and, with ``cfg.out``, written as JSON."""
    from .runner import build_runtime, run

    opts = cfg.options()
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    runtime = build_runtime(opts, on_warning or (lambda msg: None))
    report = run(runtime, opts, on_status or (lambda msg: None))
    if cfg.out is not None:
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        cfg.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        (on_status or (lambda msg: None))(f"report: {cfg.out}")
    return report


__all__ = ["BenchConfig", "run_bench"]
