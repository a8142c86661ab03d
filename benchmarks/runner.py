"""``sevila bench`` from options to the JSON-ready report: build the model, run the chosen parts, record all."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sevila_tools.benchmarks.decoding import DecodeKnobs
from sevila_tools.benchmarks.full_size import build_full_runtime, estimate_flops, part_parameter_counts
from sevila_tools.benchmarks.harness import PAPER, Setting, load_average, machine_info
from sevila_tools.benchmarks.inputs import SHAPES, make_questions, make_videos
from sevila_tools.benchmarks.scenarios import ScenarioConfig, run_scenarios
from sevila_tools.benchmarks.stages import StageConfig, run_stages
from sevila_tools.errors import InputError
from sevila_tools.runtime import SevilaRuntime

PARTS = ("stages", "single", "dataset")
Progress = Callable[[str], None]


@dataclass
class BenchOptions:
    """Everything ``sevila bench`` takes (see ``BENCHMARKS.md`` for the meaning of each knob)."""

    parts: list[str] = field(default_factory=lambda: ["stages"])
    size: str = "tiny"
    model: str | None = None
    checkpoint: str = "auto"
    device: str = "auto"
    vit_dtype: str | None = None
    t5_dtype: str | None = None
    vit_batch_size: int | None = None
    t5_batch_size: int | None = None
    settings: list[Setting] = field(default_factory=lambda: [Setting(32, 4), Setting(16, 4), Setting(64, 8)])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    repeats: int | None = None
    warmup: int | None = None
    reference: bool = False
    knobs: DecodeKnobs = field(default_factory=DecodeKnobs)
    video_frames: int = 300
    num_options: int = 5
    questions_per_call: int | None = None
    videos: tuple[str, ...] = ("nextqa", "qvhighlights", "agent", "long")
    dataset_videos: int = 6
    questions_per_video: int = 9
    scale: float = 1.0
    video_dir: Path | None = None
    notes: list[str] = field(default_factory=list)


def parse_parts(text: str) -> list[str]:
    """``stages``, ``single``, ``dataset`` (comma-separated) or ``all``; one-line error otherwise."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(PARTS)
    bad = [n for n in names if n not in PARTS]
    if bad or not names:
        raise InputError(f"bad --scenario {text!r}: use all or a list of {', '.join(PARTS)}")
    return [p for p in PARTS if p in names]


def parse_videos(text: str) -> tuple[str, ...]:
    """Scenario video shapes, comma-separated (``nextqa,qvhighlights,agent,long``)."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [n for n in names if n not in SHAPES]
    if bad or not names:
        raise InputError(f"bad --videos {text!r}: choose from {', '.join(SHAPES)}")
    return names


def _cpu_full_size(opts: BenchOptions, warn: Progress) -> None:
    """A full-size model on a CPU is a one-sample smoke run in bf16: adjust the options and say so."""
    if opts.batch_sizes != [1] or len(opts.settings) > 1:
        opts.notes.append("--size full on CPU is a one-sample smoke run: batch 1, first setting only")
    opts.batch_sizes, opts.settings = [1], opts.settings[:1]
    if opts.settings[0].frames > 32:
        raise InputError("--size full on CPU supports at most 32 frames (e.g. --settings 32:4 or 8:2)")
    opts.repeats = 1 if opts.repeats is None else opts.repeats
    opts.warmup = 0 if opts.warmup is None else opts.warmup
    opts.vit_dtype, opts.t5_dtype = opts.vit_dtype or "bf16", opts.t5_dtype or "bf16"
    ram = "~16-17 GB" if "fp32" in (opts.vit_dtype, opts.t5_dtype) else "~9-10 GB"
    opts.notes.append(
        f"CPU full-size smoke run in ViT {opts.vit_dtype} / T5 {opts.t5_dtype}: minutes, {ram} of RAM"
    )
    warn(f"--size full on CPU takes minutes and {ram} of RAM (random weights of the real shapes; a GPU job)")


def build_runtime(opts: BenchOptions, warn: Progress) -> SevilaRuntime:
    """The model under test: ``tiny-random``, the full-size random build, or a loaded ``--model``."""
    from sevila_tools.loading import load_runtime, resolve_device

    if opts.size not in ("tiny", "full"):
        raise InputError(f"--size must be tiny or full, got {opts.size!r}")
    for name, value in (("--vit-dtype", opts.vit_dtype), ("--t5-dtype", opts.t5_dtype)):
        if value not in (None, "fp32", "fp16", "bf16"):
            raise InputError(f"{name} must be fp32, fp16 or bf16, got {value!r}")
    if opts.model is None and opts.size == "full" and resolve_device(opts.device).type == "cpu":
        _cpu_full_size(opts, warn)
    if opts.model is not None:
        rt = load_runtime(
            opts.model, opts.checkpoint, device=opts.device, vit_dtype=opts.vit_dtype, t5_dtype=opts.t5_dtype
        )
    elif opts.size == "full":
        rt = build_full_runtime(opts.device, opts.vit_dtype, opts.t5_dtype)
    else:
        rt = load_runtime(
            "tiny-random", "none", device=opts.device, vit_dtype=opts.vit_dtype, t5_dtype=opts.t5_dtype
        )
    rt.vit_batch_size = opts.vit_batch_size or rt.vit_batch_size
    rt.t5_batch_size = opts.t5_batch_size or rt.t5_batch_size
    return rt


def _model_info(runtime: SevilaRuntime, opts: BenchOptions) -> dict[str, Any]:
    info = {
        k: runtime.info.get(k) for k in ("model", "checkpoint", "random_weights", "build_s", "weight_gib")
    }
    return {
        **info,
        "size": opts.size if opts.model is None else "custom",
        "device": str(runtime.device),
        "precision": runtime.precision.describe(),
        "parameters": part_parameter_counts(runtime.model),
        "attn_implementation": {
            "vision": runtime.model.vision_model.config._attn_implementation,
            "t5": runtime.model.language_model.config._attn_implementation,
        },
        "vit_batch_size": runtime.vit_batch_size,
        "t5_batch_size": runtime.t5_batch_size,
    }


def _stage_section(runtime: SevilaRuntime, opts: BenchOptions, folder: Path, say: Progress) -> dict[str, Any]:
    max_b = max(opts.batch_sizes)
    say(f"writing {min(max_b, 8)} synthetic videos ({opts.video_frames}+ frames each)")
    questions = make_questions(
        make_videos(folder, min(max_b, 8), num_frames=opts.video_frames), max_b, opts.num_options
    )
    tok = runtime.tokenizer
    loc_len = min(77, max(len(tok(q.loc_text).input_ids) for q in questions))
    qa_len = min(77, max(len(tok(q.qa_text).input_ids) for q in questions))
    cfg = StageConfig(
        repeats=opts.repeats if opts.repeats is not None else 3,
        warmup=opts.warmup if opts.warmup is not None else 1,
        reference=opts.reference,
        knobs=opts.knobs,
        num_options=opts.num_options,
        questions_per_call=opts.questions_per_call,
    )
    out = run_stages(runtime, questions, opts.settings, opts.batch_sizes, cfg, say)
    out["flops_tflop_per_sample"] = {
        s.label: estimate_flops(runtime.model.config, s, loc_len, qa_len) for s in opts.settings
    }
    out["text_tokens"] = {"localizer": loc_len, "answerer": qa_len}
    return out


def _scenario_config(opts: BenchOptions) -> ScenarioConfig:
    return ScenarioConfig(
        setting=opts.settings[0],
        knobs=opts.knobs,
        videos=opts.videos,
        dataset_videos=opts.dataset_videos,
        questions_per_video=opts.questions_per_video,
        scale=opts.scale,
        repeats=opts.repeats if opts.repeats is not None else 3,
        warmup=opts.warmup if opts.warmup is not None else 1,
    )


def default_video_dir() -> Path:
    """Where scenario videos are kept between runs: ``~/.cache/sevila_tools/bench-videos``."""
    return Path.home() / ".cache" / "sevila_tools" / "bench-videos"


def run(runtime: SevilaRuntime, opts: BenchOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the requested parts (``stages``, ``single``, ``dataset``) and return one JSON-ready report."""
    say = progress or (lambda _msg: None)
    config = {k: v for k, v in asdict(opts).items() if k not in ("notes", "settings", "knobs", "video_dir")}
    k = opts.knobs
    config |= {
        "settings": [s.label for s in opts.settings],
        "decoder": k.decoder,
        "decode_workers": k.workers,
    }
    config |= {"prefetch": k.prefetch, "video_dir": str(opts.video_dir or default_video_dir())}
    report: dict[str, Any] = {
        "machine": machine_info(runtime.device),
        "model": _model_info(runtime, opts),
        "config": config,
        "paper": PAPER,
        "results": [],
    }
    with contextlib.ExitStack() as stack:
        if "stages" in opts.parts:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            report.update(_stage_section(runtime, opts, folder, say))
        scenario_parts = [p for p in opts.parts if p != "stages"]
        if scenario_parts:
            folder = opts.video_dir or default_video_dir()
            report["scenarios"] = run_scenarios(runtime, scenario_parts, folder, _scenario_config(opts), say)
    report["machine"]["load_average_end"] = load_average()
    report["notes"] = opts.notes
    return report


__all__ = [
    "PARTS",
    "BenchOptions",
    "build_runtime",
    "default_video_dir",
    "parse_parts",
    "parse_videos",
    "run",
]
