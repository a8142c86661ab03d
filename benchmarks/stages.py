"""Stage timings of the library's own ``VideoEncoder`` + ``Pipeline`` (a ``StageClock``), next to the reference."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sevila_tools.benchmarks.decoding import DecodeKnobs, decode_all, make_encoder
from sevila_tools.benchmarks.harness import PeakMemory, Setting, max_memory, stats, sync
from sevila_tools.benchmarks.inputs import BenchQuestion
from sevila_tools.benchmarks.reference import ReferenceOutput, reference_batch
from sevila_tools.encoding import EncodedVideo
from sevila_tools.pipeline import ChainOutput, Pipeline
from sevila_tools.runtime import SevilaRuntime
from sevila_tools.timing import StageClock, Timer
from sevila_tools.video import SampledFrames, sample_frames

#: stages of the pipeline path: the encoder's ``decode``/``vit``, the pipeline's ``select``/``gather``/``answer``
STAGES = ("decode", "vit", "select", "gather", "answer", "chain", "end_to_end", "answerer_only")
REFERENCE_STAGES = ("decode", "vit", "select", "gather", "answer", "chain", "end_to_end")
REFERENCE_PATHS = ("reference", "reference_trained_eos")

Progress = Callable[[str], None]


def make_pipeline(runtime: SevilaRuntime, knobs: DecodeKnobs, timer: Timer | None = None) -> Pipeline:
    """The library's pipeline (Localizer selector, concat Answerer, faithful decoding), no feature store."""
    return Pipeline(runtime, encoder=make_encoder(runtime, knobs, timer), timer=timer)


def default_questions_per_call(device: torch.device, batch: int) -> int:
    """Questions per ``Pipeline.forward`` call: the whole batch on a GPU, one on a CPU (each question's T
    frames already form a large batch there, and a smaller working set stays in cache)."""
    return batch if device.type == "cuda" else 1


def forward_chunks(
    pipe: Pipeline, items: list[tuple[EncodedVideo, Any]], k: int, qpc: int
) -> list[ChainOutput]:
    """``pipe.forward`` on ``qpc`` questions at a time."""
    out: list[ChainOutput] = []
    for i in range(0, len(items), qpc):
        out += pipe.forward(items[i : i + qpc], k)
    return out


def uniform_subset(frames: SampledFrames, k: int) -> SampledFrames:
    """K of the candidates at the midpoints of K equal segments (the paper's "Answerer" row)."""
    t = len(frames.indices)
    edges = np.linspace(0, t, k + 1)
    pos = [min(t - 1, int((edges[i] + edges[i + 1]) / 2)) for i in range(k)]
    return dataclasses.replace(
        frames,
        frames=frames.frames[pos],
        indices=[frames.indices[p] for p in pos],
        timestamps=[frames.timestamps[p] for p in pos],
    )


@dataclass
class _Job:
    """Accumulated timings, peak memory and the last outputs of one measured path."""

    times: dict[str, list[float]] = field(default_factory=dict)
    memory: dict[str, Any] | None = None
    last: list[Any] | None = None

    def add(self, name: str, seconds: float) -> None:
        self.times.setdefault(name, []).append(seconds)


def _same(a: list[ChainOutput], b: list[ChainOutput]) -> bool:
    return [(o.selection.frame_indices, o.answer.index) for o in a] == [
        (o.selection.frame_indices, o.answer.index) for o in b
    ]


def pipeline_repeat(
    runtime: SevilaRuntime, job: _Job, qs: list[BenchQuestion], setting: Setting, knobs: DecodeKnobs, qpc: int
) -> None:
    """One timed repeat: decode (in ``knobs.workers`` processes if > 0), a staged run of the encoder's ViT and
    the pipeline (``StageClock``), the same chain without a clock as one block, the Answerer alone."""
    dev, k = runtime.device, setting.keyframes
    with PeakMemory(dev) as mem:
        clock = StageClock(dev)
        staged = make_pipeline(runtime, knobs, clock)
        t0 = time.perf_counter()
        decoded = decode_all([q.video for q in qs], setting.frames, knobs)
        job.add("decode", time.perf_counter() - t0)
        items = [(staged.encoder.from_frames(q.video, d), q.query) for d, q in zip(decoded, qs, strict=True)]
        outs = forward_chunks(staged, items, k, qpc)
        for name in ("vit", "select", "gather", "answer"):
            job.add(name, clock.seconds.get(name, 0.0))
        plain = make_pipeline(runtime, knobs)
        sync(dev)
        t0 = time.perf_counter()
        items = [(plain.encoder.from_frames(q.video, d), q.query) for d, q in zip(decoded, qs, strict=True)]
        job.last = forward_chunks(plain, items, k, qpc)
        sync(dev)
        job.add("chain", time.perf_counter() - t0)
        job.add("end_to_end", job.times["decode"][-1] + job.times["chain"][-1])
        if not _same(outs, job.last):
            raise RuntimeError("the pipeline is not deterministic across runs")  # pragma: no cover
        t0 = time.perf_counter()
        subsets = [uniform_subset(frames, k) for frames in decoded]
        plain.answer_frames(
            [(plain.encoder.from_frames(q.video, f), q.query) for f, q in zip(subsets, qs, strict=True)]
        )
        sync(dev)
        job.add("answerer_only", time.perf_counter() - t0)
    job.memory = max_memory(job.memory, mem.result)


def reference_repeat(
    runtime: SevilaRuntime,
    job: _Job,
    qs: list[BenchQuestion],
    setting: Setting,
    decoder: str,
    num_options: int,
    trained_steps: bool = False,
) -> None:
    """One timed repeat of the reference path: each question decoded and answered on its own."""
    dev = runtime.device
    with PeakMemory(dev) as mem:
        clock = StageClock(dev)
        frames = []
        for q in qs:
            with clock.stage("decode"):
                frames.append(sample_frames(q.video, setting.frames, decoder=decoder).frames)
        t0 = time.perf_counter()
        texts = [(q.loc_text, q.qa_text) for q in qs]
        job.last = reference_batch(
            runtime,
            frames,
            texts,
            setting.keyframes,
            num_options,
            stage=clock.stage,
            trained_steps=trained_steps,
        )
        sync(dev)
        chain = time.perf_counter() - t0
        for name, sec in clock.seconds.items():
            job.add(name, sec)
        job.add("chain", chain)
        job.add("end_to_end", clock.seconds["decode"] + chain)
    job.memory = max_memory(job.memory, mem.result)


def compare_outputs(
    runtime: SevilaRuntime, outs: list[ChainOutput], refs: list[ReferenceOutput]
) -> dict[str, Any]:
    """Agreement of the pipeline with the reference: score differences, keyframes, answers, step-0 tokens."""
    yes = torch.tensor([o.selection.candidate_scores for o in outs])
    ref_yes = torch.stack([r.yes for r in refs]).float()
    ref_prob = torch.stack([torch.stack([r.no, r.yes], -1).float().softmax(-1)[..., 1] for r in refs])
    prob = torch.tensor([o.selection.extra["yes_prob"] for o in outs])
    opt = torch.tensor([o.answer.probs for o in outs])
    ref_opt = torch.stack([r.letter_logits.float().softmax(-1) for r in refs])
    return {
        "questions": len(outs),
        "max_abs_diff_yes": float((yes - ref_yes).abs().max()),
        "max_abs_diff_yes_prob": float((prob - ref_prob).abs().max()),
        "max_abs_diff_option_probs": float((opt - ref_opt).abs().max()),
        "keyframes_equal": [o.selection.candidate_positions for o in outs] == [r.positions for r in refs],
        "answers_equal": [o.answer.index for o in outs] == [r.prediction for r in refs],
        "step0_equal": [o.answer.step0_token for o in outs]
        == [runtime.token_str(r.step0_token) for r in refs],
    }


@dataclass
class StageConfig:
    """How the stage benchmark runs (``sevila bench --scenario stages``)."""

    repeats: int = 3
    warmup: int = 1
    reference: bool = False
    knobs: DecodeKnobs = field(default_factory=DecodeKnobs)
    num_options: int = 5
    questions_per_call: int | None = None


def measure_setting(
    runtime: SevilaRuntime,
    questions: list[BenchQuestion],
    setting: Setting,
    batch_sizes: list[int],
    cfg: StageConfig,
    say: Progress,
) -> tuple[dict[int, _Job], _Job, _Job]:
    """Warm-up, then repeats interleaved across batch sizes and paths (load changes hit all of them alike)."""
    if len(questions) != max(batch_sizes):
        raise ValueError("give exactly one question per slot of the largest batch")
    pipe = {b: _Job() for b in batch_sizes}
    ref, ref_eos = _Job(), _Job()
    dev = runtime.device

    def one_round(jobs: dict[int, _Job], refs: tuple[_Job, _Job] | None, label: str) -> None:
        for b in batch_sizes:
            say(f"{setting.label}: {label}, pipeline batch {b}")
            qpc = cfg.questions_per_call or default_questions_per_call(dev, b)
            pipeline_repeat(runtime, jobs[b], questions[:b], setting, cfg.knobs, qpc)
        if refs is not None:
            say(f"{setting.label}: {label}, reference path, {len(questions)} questions one by one")
            for job, eos in zip(refs, (False, True), strict=True):
                reference_repeat(runtime, job, questions, setting, cfg.knobs.decoder, cfg.num_options, eos)

    for _ in range(cfg.warmup):
        one_round({b: _Job() for b in batch_sizes}, None, "warm-up")
        if cfg.reference:
            reference_repeat(runtime, _Job(), questions[:1], setting, cfg.knobs.decoder, cfg.num_options)
    for r in range(cfg.repeats):
        one_round(pipe, (ref, ref_eos) if cfg.reference else None, f"repeat {r + 1}/{cfg.repeats}")
    return pipe, ref, ref_eos


def setting_rows(
    runtime: SevilaRuntime,
    setting: Setting,
    batch_sizes: list[int],
    jobs: tuple[dict[int, _Job], _Job, _Job],
    reference: bool,
) -> dict[str, list[dict[str, Any]]]:
    """Report rows of one setting: pipeline results, reference results, agreement, speed-ups."""
    pipe, ref, ref_eos = jobs
    head = {"setting": setting.label, "frames": setting.frames, "keyframes": setting.keyframes}
    out: dict[str, list[dict[str, Any]]] = {"results": [], "reference": [], "agreement": [], "speedups": []}
    for b in batch_sizes:
        row = {**head, "batch_size": b, "path": "pipeline", "memory": pipe[b].memory}
        row["stages"] = {n: stats(v, b) for n, v in pipe[b].times.items()}
        out["results"].append(row)
    if not reference:
        return out
    n = max(batch_sizes)
    for path, job in zip(REFERENCE_PATHS, (ref, ref_eos), strict=True):
        steps = [o.generate_steps for o in job.last or []]
        out["reference"].append(
            {
                **head, "batch_size": 1, "questions": n, "path": path, "memory": job.memory,
                "stages": {name: stats(v, n) for name, v in job.times.items()},
                "generate_steps": {p: round(sum(s[p] for s in steps) / len(steps), 2) for p in steps[0]},
            }
        )  # fmt: skip
    agree = compare_outputs(runtime, pipe[n].last or [], ref.last or [])
    agree["trained_eos_answers_equal"] = compare_outputs(runtime, pipe[n].last or [], ref_eos.last or [])[
        "answers_equal"
    ]
    out["agreement"].append({"setting": setting.label, **agree})

    def per_sample(job: _Job, stage: str) -> float:
        return statistics.median(job.times[stage]) / n

    for row in out["results"]:
        st = row["stages"]
        out["speedups"].append(
            {
                "setting": setting.label,
                "batch_size": row["batch_size"],
                "chain_vs_trained_eos": round(per_sample(ref_eos, "chain") / st["chain"]["s_per_sample"], 2),
                "chain_vs_30_steps": round(per_sample(ref, "chain") / st["chain"]["s_per_sample"], 2),
                "end_to_end_vs_trained_eos": round(
                    per_sample(ref_eos, "end_to_end") / st["end_to_end"]["s_per_sample"], 2
                ),
            }
        )
    return out


def headline(speedups: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline speed-up: first setting, batch 8 (else the largest), against the reference stopped where
    a trained model stops; the 30-step figure is secondary."""
    if not speedups:
        return {}
    first = speedups[0]["setting"]
    rows = [s for s in speedups if s["setting"] == first]
    pick = next((s for s in rows if s["batch_size"] == 8), rows[-1])
    return {
        "speedup_vs_trained_eos": pick["chain_vs_trained_eos"],
        "speedup_vs_30_steps": pick["chain_vs_30_steps"],
        "speedup_basis": (
            f"forward chain (decoded frames -> answers), setting {first}: reference s/sample (one question at a "
            "time through generate, stopped where a trained model emits </s>: Localizer 2 tokens, Answerer 3) "
            f"/ pipeline s/sample at batch {pick['batch_size']}; speedup_vs_30_steps: the same against "
            "generate(max_new_tokens=30) as random weights run it"
        ),
    }


def run_stages(
    runtime: SevilaRuntime,
    questions: list[BenchQuestion],
    settings: list[Setting],
    batch_sizes: list[int],
    cfg: StageConfig,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Time every stage of the pipeline per setting and batch size (and the reference); the report section."""
    say = progress or (lambda _msg: None)
    out: dict[str, Any] = {"results": [], "reference": [], "agreement": [], "speedups": []}
    for setting in settings:
        jobs = measure_setting(runtime, questions, setting, batch_sizes, cfg, say)
        for key, rows in setting_rows(runtime, setting, batch_sizes, jobs, cfg.reference).items():
            out[key] += rows
    out.update(headline(out["speedups"]))
    return out


__all__ = [
    "REFERENCE_PATHS",
    "REFERENCE_STAGES",
    "STAGES",
    "StageConfig",
    "compare_outputs",
    "default_questions_per_call",
    "forward_chunks",
    "make_pipeline",
    "measure_setting",
    "pipeline_repeat",
    "reference_repeat",
    "run_stages",
    "setting_rows",
    "uniform_subset",
]
