"""Speed and memory benchmark of the SeViLA forward chain (``sevila bench``).

What is timed, per frame setting ``T:K`` (T candidate frames -> K keyframes) and batch size B (questions per
batch, each question with its own synthetic video):

============== =================================================================================================
stage          work
============== =================================================================================================
``decode``     sample T frames of each video with SeViLA's rule and decode them at 224x224 (the real reader)
``preprocess`` uint8 frames to the device (4x less than float), NCHW, ``/255`` + CLIP norm (:func:`sevila_tools.video.preprocess`)
``vit``        one ViT pass over the B*T frames (``runtime.vit``, chunks of ``vit_batch_size``, interleaved with
               the preprocessing of the next chunk)
``localizer``  localizer Q-Former + T5: one encoder pass and one decoder step per frame, all frames of
               ``questions_per_call`` questions per call (``runtime.localizer_logits``)
``select``     top-K by yes-logit (ties -> lower index), temporal order, gather the K raw features (no re-ViT)
``answerer``   answerer Q-Former + T5 on the K keyframes of all B questions, faithful decoding (``runtime.answer``)
``chain``      the whole forward chain from decoded frames to answers, timed as one block (no syncs inside)
``end_to_end`` ``decode`` + ``chain``
============== =================================================================================================

``answerer_only`` times the Answerer alone on K uniformly spaced frames (preprocess + ViT on K frames + answer),
the paper's "Answerer" row. ``--reference`` also times :mod:`sevila_tools.reference`, the official code's way
(one question at a time, host-side preprocessing, ``generate(max_new_tokens=30)`` for the Localizer and the
Answerer), once as is and once with ``generate`` stopped where a trained model emits ``</s>`` (random weights
never do, so the literal call runs all 30 steps); it checks that the paths agree (scores, keyframes, answers)
and reports the speed-up of the chain (``speedup``, ``speedup_vs_trained_eos``). Repeats are interleaved
across paths and batch sizes, and medians reported, so load changes on a shared machine hit all paths alike.

Memory: peak process RSS on CPU (Linux ``VmHWM``, reset before each measurement through
``/proc/self/clear_refs``; a 2 ms polling thread where that is unavailable), ``torch.cuda.max_memory_allocated``
on CUDA (both include the weights).

``--size full`` builds SeViLA's real architecture (EVA ViT-g/14, two BLIP-2 Q-Formers, Flan-T5-XL) with
random weights: constructed on the meta device, cast to the runtime's dtypes there, materialised with
``to_empty`` on the target device and filled by a cheap seeded uniform init, so nothing is downloaded and no
slow fp32 CPU init runs. It pairs with the tiny in-memory tokenizer (ids < vocab size); it measures real-size
cost, its outputs are meaningless.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sevila_tools.errors import InputError
from sevila_tools.prompts import prompts_for
from sevila_tools.runtime import Precision, SevilaRuntime
from sevila_tools.selectors.base import topk_sorted
from sevila_tools.video import SampledFrames, sample_frames

#: the paper's inference cost (SeViLA, Yu et al. 2023; one NVIDIA A6000, 32 frames -> 4 keyframes)
PAPER = {
    "gpu": "NVIDIA RTX A6000",
    "setting": "32:4",
    "sevila_s_per_sample": 3.28,
    "sevila_memory_gb": 7.98,
    "answerer_only_s_per_sample": 1.79,
}
STAGES = (
    "decode",
    "preprocess",
    "vit",
    "localizer",
    "select",
    "answerer",
    "chain",
    "end_to_end",
    "answerer_only",
)
REFERENCE_STAGES = ("decode", "vit", "localizer", "select", "answerer", "chain", "end_to_end")
REFERENCE_PATHS = ("reference", "reference_trained_eos")
GIB = 2**30

Progress = Callable[[str], None]


# ============================================================================================ settings
@dataclass(frozen=True)
class Setting:
    """T candidate frames -> K keyframes."""

    frames: int
    keyframes: int

    @property
    def label(self) -> str:
        return f"{self.frames}:{self.keyframes}"


def parse_settings(text: str) -> list[Setting]:
    """``"32:4,16:4"`` -> settings; one-line :class:`InputError` on bad input."""
    out: list[Setting] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            t, k = (int(x) for x in part.split(":"))
        except ValueError:
            raise InputError(f"bad frame setting {part!r}: use FRAMES:KEYFRAMES, e.g. 32:4") from None
        if not (1 <= k <= t <= 256):
            raise InputError(f"bad frame setting {part!r}: need 1 <= keyframes <= frames <= 256")
        out.append(Setting(t, k))
    if not out:
        raise InputError("no frame setting given (e.g. --settings 32:4)")
    return list(dict.fromkeys(out))


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,8"`` -> ``[1, 8]``; one-line :class:`InputError` on bad input."""
    try:
        sizes = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"bad batch sizes {text!r}: use comma-separated integers, e.g. 1,8") from None
    if not sizes or any(not 1 <= b <= 256 for b in sizes):
        raise InputError(f"bad batch sizes {text!r}: need integers between 1 and 256")
    return sorted(set(sizes))


# ============================================================================================ full-size model
def full_config() -> Any:
    """BLIP-2 config of SeViLA's real architecture: EVA ViT-g/14, BLIP-2 Q-Former, Flan-T5-XL."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, T5Config

    vision = Blip2VisionConfig(
        hidden_size=1408,
        intermediate_size=6144,
        num_hidden_layers=39,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        qkv_bias=True,
        layer_norm_eps=1e-6,
    )
    qformer = Blip2QFormerConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        cross_attention_frequency=2,
        encoder_hidden_size=1408,
    )
    text = T5Config(
        vocab_size=32128,
        d_model=2048,
        d_kv=64,
        d_ff=5120,
        num_layers=24,
        num_decoder_layers=24,
        num_heads=32,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )  # SevilaModel's prepare_config then sets dense_act_fn="gelu" (sevila.md §2.1)
    return Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=32)


def build_meta_model(config: Any | None = None) -> Any:
    """SeViLA model on the meta device (no memory): parameter counts and shapes only."""
    from sevila_tools.modeling import SevilaModel

    with torch.device("meta"):
        return SevilaModel(config if config is not None else full_config())


def part_parameter_counts(model: Any) -> dict[str, int]:
    """Parameters of each part (shared tensors counted once)."""
    counts = {
        "vision_model": sum(p.numel() for p in model.vision_model.parameters()),
        "language_model": sum(p.numel() for p in model.language_model.parameters()),
        "answerer": sum(p.numel() for p in model.branch_parameters("answerer").values()),
        "localizer": sum(p.numel() for p in model.branch_parameters("localizer").values()),
    }
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def weight_bytes(model: Any, precision: Precision) -> int:
    """Bytes the weights take under ``precision`` (ViT Linear/Conv in the ViT dtype, T5 in the T5 dtype)."""
    from torch import nn

    size = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}
    total = 0
    cast = set()
    for module in model.vision_model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            for p in module.parameters(recurse=False):
                cast.add(id(p))
                total += p.numel() * size[precision.vit]
    seen = set(cast)
    for p in model.language_model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * size[precision.t5]
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * 4
    return total


@torch.no_grad()
def random_init_(model: Any, seed: int = 0) -> None:
    """Cheap seeded random init in place, on any device and dtype (uniform, so no slow normal sampling).

    Biases 0, 1-D weights (LayerNorm / T5 RMSNorm) 1, embeddings and query tokens ~ unit variance, every other
    matrix ~ variance 1/fan_in: activations keep unit scale through 39 ViT blocks in fp16 and 24+24 T5 blocks."""
    gen: dict[torch.device, torch.Generator] = {}
    for name, p in model.named_parameters():
        if p.device not in gen:
            gen[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        if name.endswith("bias"):
            p.zero_()
        elif p.ndim == 1:
            p.fill_(1.0)
        else:
            unit = "embedding" in name or "query_tokens" in name or name.endswith("shared.weight")
            bound = math.sqrt(3.0) * (1.0 if unit else p[0].numel() ** -0.5)
            p.uniform_(-bound, bound, generator=gen[p.device])


def build_random_runtime(
    config: Any,
    device: str = "auto",
    vit_dtype: str | None = None,
    t5_dtype: str | None = None,
    seed: int = 0,
    check_memory: bool = True,
    name: str = "random",
) -> SevilaRuntime:
    """A runtime for ``config`` with random weights, materialised directly in its dtypes on the target device
    (meta-device construction, dtype casts on meta, ``to_empty``, :func:`random_init_`), with the tiny
    in-memory tokenizer (its ids are below any T5 vocabulary size)."""
    from sevila_tools.loading import apply_precision, resolve_device
    from sevila_tools.tiny import tiny_tokenizer

    dev = resolve_device(device)
    precision = Precision.for_device(dev, vit=vit_dtype, t5=t5_dtype)
    t0 = time.perf_counter()
    model = build_meta_model(config)
    need = weight_bytes(model, precision)
    if check_memory and dev.type == "cpu":
        import psutil

        avail = psutil.virtual_memory().available
        if need * 1.15 > avail:
            raise InputError(
                f"the {name} model needs about {need / GIB:.1f} GiB for its weights plus activations; "
                f"only {avail / GIB:.1f} GiB free (try --t5-dtype bf16 --vit-dtype bf16, or a GPU)"
            )
    apply_precision(model, precision)  # dtype casts on the meta device cost nothing
    model.to_empty(device=dev)
    lm = model.language_model  # keep T5's embedding shared by encoder and decoder after to_empty
    lm.encoder.embed_tokens = lm.shared
    lm.decoder.embed_tokens = lm.shared
    random_init_(model, seed)
    model.eval()
    model.freeze(())
    _sync(dev)
    info = {
        "model": name,
        "checkpoint": None,
        "random_weights": True,
        "device": str(dev),
        "precision": precision.describe(),
        "build_s": round(time.perf_counter() - t0, 2),
        "weight_gib": round(need / GIB, 3),
        "sources": {
            p: f"random init ({name})" for p in ("vision_model", "language_model", "answerer", "localizer")
        },
    }
    return SevilaRuntime(model=model, tokenizer=tiny_tokenizer(), device=dev, precision=precision, info=info)


def build_full_runtime(
    device: str = "auto",
    vit_dtype: str | None = None,
    t5_dtype: str | None = None,
    seed: int = 0,
    check_memory: bool = True,
) -> SevilaRuntime:
    """SeViLA's real architecture (:func:`full_config`) with random weights: ``sevila bench --size full``."""
    return build_random_runtime(
        full_config(), device, vit_dtype, t5_dtype, seed, check_memory, name="full-random"
    )


# ============================================================================================ measurement
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Wall time per named stage; synchronises the device around each stage so GPU work is attributed."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        _sync(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


@contextlib.contextmanager
def _no_stage(name: str) -> Iterator[None]:
    yield


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _vm_hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory during a block: CUDA ``max_memory_allocated`` or process peak RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.result: dict[str, Any] = {}
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None
        self._hwm = False

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss())
            self._stop.wait(0.002)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            _sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = _rss()
            self._hwm = _reset_hwm() and _vm_hwm() is not None
            if not self._hwm:
                self._peak = self._base
                self._thread = threading.Thread(target=self._poll, daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            _sync(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.result = {
                "kind": "cuda_max_memory_allocated",
                "peak_bytes": int(peak),
                "peak_gib": round(peak / GIB, 3),
                "peak_gb": round(peak / 1e9, 3),
                "baseline_gib": round(self._base / GIB, 3),
                "reserved_gib": round(torch.cuda.max_memory_reserved(self.device) / GIB, 3),
            }
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak, kind = max(self._peak, _rss()), "process_rss_polled"
        else:
            peak, kind = _vm_hwm() or _rss(), "process_rss_peak"
        self.result = {
            "kind": kind,
            "peak_bytes": int(peak),
            "peak_gib": round(peak / GIB, 3),
            "peak_gb": round(peak / 1e9, 3),
            "baseline_gib": round(self._base / GIB, 3),
        }


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """Where the numbers came from: CPU model, cores, memory, library versions, GPU."""
    import psutil
    import transformers

    cpu_model, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and cpu_model in ("unknown", "", platform.processor()):
                cpu_model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": cpu_model,
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma"}),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": affinity,
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(psutil.virtual_memory().total / GIB, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
    }
    for mod in ("av", "decord"):
        with contextlib.suppress(Exception):
            info[mod] = __import__(mod).__version__
    info["cuda"] = None
    if torch.cuda.is_available():
        dev = device if device is not None and device.type == "cuda" else torch.device("cuda")
        props = torch.cuda.get_device_properties(dev)
        info["cuda"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / GIB, 1),
            "cuda_version": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return info


# ============================================================================================ inputs
_SUBJECTS = ["man", "woman", "boy", "girl", "dog", "cat", "person", "people"]
_ACTIONS = [
    "holding a red ball",
    "walking with the dog",
    "sitting on the car",
    "eating with a woman",
    "playing with the cat",
    "running to the left",
    "looking at the blue square",
    "talking with people",
    "moving up and down",
    "holding the green ball",
]
_WHEN = [
    "at the start of the video",
    "at the end of the clip",
    "in the middle of the video",
    "after the boy sits",
]


@dataclass
class BenchQuestion:
    """One made-up multiple-choice question on its own synthetic video."""

    video: str
    question: str
    options: list[str]
    loc_text: str
    qa_text: str


def make_questions(videos: list[str], count: int, num_options: int = 5) -> list[BenchQuestion]:
    """``count`` questions (deterministic, varied lengths) cycling over ``videos``."""
    out = []
    for i in range(count):
        subject = _SUBJECTS[i % len(_SUBJECTS)]
        question = f"what is the {subject} {_ACTIONS[i % len(_ACTIONS)].split()[0]} {_WHEN[i % len(_WHEN)]}?"
        options = [f"{_ACTIONS[(i + 3 * j + 1) % len(_ACTIONS)]}." for j in range(num_options)]
        loc_text, qa_text = prompts_for(None, question, options)
        out.append(BenchQuestion(videos[i % len(videos)], question, options, loc_text, qa_text))
    return out


def make_videos(folder: str | Path, count: int, num_frames: int = 300, fps: int = 30) -> list[str]:
    """``count`` synthetic clips (moving square + counter, 320x240, h264) of slightly different lengths."""
    from sevila_tools.synthetic import make_video

    folder = Path(folder)
    return [
        str(make_video(folder / f"bench_{i}.mp4", num_frames=num_frames + 7 * i, fps=fps, gop_size=30))
        for i in range(count)
    ]


def decode_batch(
    questions: list[BenchQuestion], num_frames: int, decoder: str = "auto", workers: int = 1
) -> list[SampledFrames]:
    """Sample and decode the candidate frames of each question's video (threads when ``workers > 1``;
    decord reads are serialised by the video module's stderr lock, PyAV reads run in parallel)."""
    if workers <= 1 or len(questions) == 1:
        return [sample_frames(q.video, num_frames, decoder=decoder) for q in questions]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda q: sample_frames(q.video, num_frames, decoder=decoder), questions))


# ============================================================================================ the two paths
@dataclass
class ChainOutput:
    """Forward-chain outputs for a batch of questions (on the host)."""

    yes: torch.Tensor  # (B, T) localizer yes-logits
    no: torch.Tensor  # (B, T)
    positions: list[list[int]]  # selected candidate positions per question, ascending
    letter_logits: torch.Tensor  # (B, n)
    predictions: list[int]
    step0_tokens: list[int]
    generate_steps: list[dict[str, int]] = field(default_factory=list)  # reference path only


def default_questions_per_call(device: torch.device, batch: int) -> int:
    """Questions per Localizer call: the whole batch on a GPU (large matmuls), one question on a CPU (each
    question's T frames already form a large batch; a smaller working set stays in cache: measured 1.4x faster
    for the tiny model at batch 8)."""
    return batch if device.type == "cuda" else 1


@torch.no_grad()
def fast_forward(
    runtime: SevilaRuntime,
    frames: np.ndarray,
    loc_texts: list[str],
    qa_texts: list[str],
    num_keyframes: int,
    num_options: int,
    stage: Callable[[str], contextlib.AbstractContextManager] | None = None,
    questions_per_call: int | None = None,
) -> ChainOutput:
    """The batched forward chain from decoded candidate frames ``(B, T, 224, 224, 3)`` uint8.

    Frames go to the device as uint8 and are normalised (:func:`sevila_tools.video.preprocess`) and encoded in chunks of
    ``runtime.vit_batch_size`` (preprocessing interleaved with the ViT: no full-batch float pixel tensor), once;
    both branches reuse the raw features. The Localizer runs one T5 encoder pass + one decoder step per frame,
    ``questions_per_call`` questions at a time (default :func:`default_questions_per_call`); the Answerer
    reads the gathered keyframe features of all questions together."""
    stage = stage or _no_stage
    b, t = frames.shape[:2]
    qpc = questions_per_call or default_questions_per_call(runtime.device, b)
    x = torch.from_numpy(np.ascontiguousarray(frames).reshape(b * t, *frames.shape[2:]))
    raw: torch.Tensor | None = None
    step = max(1, runtime.vit_batch_size)
    for i in range(0, b * t, step):
        with stage("preprocess"):
            pixels = runtime.pixels(x[i : i + step])  # uint8 copied to the device, normalised there
        with stage("vit"):
            out = runtime.vit(pixels)
            if raw is None:
                raw = torch.empty((b * t, *out.shape[1:]), dtype=out.dtype, device=out.device)
            raw[i : i + step] = out
    assert raw is not None
    raw = raw.view(b, t, *raw.shape[1:])
    with stage("localizer"):
        parts = [runtime.localizer_logits(raw[i : i + qpc], loc_texts[i : i + qpc]) for i in range(0, b, qpc)]
        yes, no = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    with stage("select"):
        yes_host = yes.float().cpu()
        positions = [topk_sorted(row, num_keyframes) for row in yes_host.tolist()]
        idx = torch.tensor(positions, device=raw.device)
        raw_kf = raw[torch.arange(b, device=raw.device)[:, None], idx]  # (B, K, L, D), no second ViT pass
    with stage("answerer"):
        ans = runtime.answer(raw_kf, qa_texts, num_options, "faithful")
        letters = ans.letter_logits.float().cpu()
    return ChainOutput(
        yes=yes_host,
        no=no.float().cpu(),
        positions=positions,
        letter_logits=letters,
        predictions=letters.argmax(-1).tolist(),
        step0_tokens=list(ans.step0_tokens),
    )


@torch.no_grad()
def answerer_only_forward(
    runtime: SevilaRuntime, frames: np.ndarray, qa_texts: list[str], num_keyframes: int, num_options: int
) -> list[int]:
    """The Answerer alone on K uniformly spaced frames of the candidates (preprocess + ViT on K + answer)."""
    b, t = frames.shape[:2]
    edges = np.linspace(0, t, num_keyframes + 1)
    pos = [min(t - 1, int((edges[i] + edges[i + 1]) / 2)) for i in range(num_keyframes)]
    x = torch.from_numpy(np.ascontiguousarray(frames[:, pos]).reshape(b * num_keyframes, *frames.shape[2:]))
    raw = runtime.vit(runtime.pixels(x))
    out = runtime.answer(raw.view(b, num_keyframes, *raw.shape[1:]), qa_texts, num_options, "faithful")
    return out.predictions


def reference_batch(
    runtime: SevilaRuntime,
    frames: list[np.ndarray],
    questions: list[BenchQuestion],
    num_keyframes: int,
    num_options: int,
    stage: Callable[[str], contextlib.AbstractContextManager] | None = None,
    trained_steps: bool = False,
) -> ChainOutput:
    """The reference-style path over several questions, one question at a time (``trained_steps``: see
    :func:`sevila_tools.reference.reference_forward`)."""
    from sevila_tools.reference import reference_forward

    outs = [
        reference_forward(
            runtime,
            f,
            q.loc_text,
            q.qa_text,
            num_keyframes,
            num_options,
            stage=stage,
            trained_steps=trained_steps,
        )
        for f, q in zip(frames, questions, strict=True)
    ]
    return ChainOutput(
        yes=torch.stack([o.yes for o in outs]),
        no=torch.stack([o.no for o in outs]),
        positions=[o.positions for o in outs],
        letter_logits=torch.stack([o.letter_logits for o in outs]),
        predictions=[o.prediction for o in outs],
        step0_tokens=[o.step0_token for o in outs],
        generate_steps=[o.generate_steps for o in outs],
    )


def compare_outputs(fast: ChainOutput, ref: ChainOutput) -> dict[str, Any]:
    """Agreement of the two paths: max |diff| of the scores, equal keyframes, equal answers."""
    return {
        "questions": len(fast.predictions),
        "max_abs_diff_yes": float((fast.yes - ref.yes).abs().max()),
        "max_abs_diff_no": float((fast.no - ref.no).abs().max()),
        "max_abs_diff_letters": float((fast.letter_logits - ref.letter_logits).abs().max()),
        "keyframes_equal": fast.positions == ref.positions,
        "answers_equal": fast.predictions == ref.predictions,
    }


# ============================================================================================ FLOPs
def estimate_flops(config: Any, setting: Setting, loc_len: int, qa_len: int) -> dict[str, float]:
    """Matmul TFLOPs per question of the fast path for a BLIP-2 ``config`` (2 per multiply-add, attention
    products included; ``loc_len``/``qa_len``: text tokens of the Localizer/Answerer prompts)."""
    cfg = config
    v, q, t = cfg.vision_config, cfg.qformer_config, cfg.text_config
    nq = cfg.num_query_tokens
    n_tok = (v.image_size // v.patch_size) ** 2 + 1
    d, ff = v.hidden_size, v.intermediate_size
    vit_frame = v.num_hidden_layers * (2 * n_tok * (4 * d * d + 2 * d * ff) + 4 * n_tok * n_tok * d)
    vit_frame += 2 * (n_tok - 1) * 3 * v.patch_size**2 * d
    h, qff, enc = q.hidden_size, q.intermediate_size, q.encoder_hidden_size
    n_cross = math.ceil(q.num_hidden_layers / q.cross_attention_frequency)
    qf_frame = q.num_hidden_layers * (2 * nq * (4 * h * h + 2 * h * qff) + 4 * nq * nq * h)
    qf_frame += n_cross * (2 * nq * 2 * h * h + 2 * n_tok * 2 * enc * h + 4 * nq * n_tok * h)
    qf_frame += 2 * nq * h * t.d_model
    inner, dm, dff = t.num_heads * t.d_kv, t.d_model, t.d_ff
    ffn = 3 * dm * dff if "gated" in t.feed_forward_proj else 2 * dm * dff

    def encoder(s: int) -> float:
        return t.num_layers * (2 * s * (4 * dm * inner + ffn) + 4 * s * s * inner)

    def decoder(steps: int, s: int) -> float:  # ``steps`` decoder positions, no cache
        per = 2 * steps * (4 * dm * inner + 2 * dm * inner + ffn) + 2 * s * 2 * dm * inner
        return t.num_decoder_layers * per + 2 * steps * dm * t.vocab_size

    loc_seq = 3 + nq + loc_len
    qa_seq = setting.keyframes * (4 + nq) + qa_len
    out = {
        "vit": setting.frames * vit_frame,
        "localizer": setting.frames * (qf_frame + encoder(loc_seq) + decoder(1, loc_seq)),
        "answerer": setting.keyframes * qf_frame + encoder(qa_seq) + decoder(1, qa_seq) + decoder(2, qa_seq),
    }
    out["total"] = sum(out.values())
    return {k: round(v / 1e12, 4) for k, v in out.items()}


# ============================================================================================ the benchmark
def _stats(values: list[float], batch: int) -> dict[str, float]:
    med = statistics.median(values)
    return {
        "s": round(med, 6),
        "min_s": round(min(values), 6),
        "s_per_sample": round(med / batch, 6),
        "samples_per_s": round(batch / med, 3) if med > 0 else float("inf"),
    }


def _stack(frames: list[SampledFrames]) -> np.ndarray:
    return np.stack([f.frames for f in frames])


def _max_memory(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    return b if a is None or b.get("peak_bytes", 0) > a.get("peak_bytes", 0) else a


@dataclass
class _Job:
    """Accumulated timings and peak memory of one measured path."""

    times: dict[str, list[float]] = field(default_factory=dict)
    memory: dict[str, Any] | None = None
    last: ChainOutput | None = None

    def add(self, name: str, seconds: float) -> None:
        self.times.setdefault(name, []).append(seconds)


def _fast_repeat(
    runtime: SevilaRuntime,
    job: _Job,
    qs: list[BenchQuestion],
    setting: Setting,
    num_options: int,
    decoder: str,
    workers: int,
    qpc: int | None = None,
) -> None:
    """One timed repeat of the fast path: staged run, un-synced chain run, Answerer-only run."""
    dev = runtime.device
    t, k = setting.frames, setting.keyframes
    loc_texts, qa_texts = [q.loc_text for q in qs], [q.qa_text for q in qs]
    with PeakMemory(dev) as mem:
        t0 = time.perf_counter()
        frames = _stack(decode_batch(qs, t, decoder, workers))
        job.add("decode", time.perf_counter() - t0)
        timer = StageTimer(dev)
        staged = fast_forward(runtime, frames, loc_texts, qa_texts, k, num_options, timer.stage, qpc)
        for name, sec in timer.times.items():
            job.add(name, sec)
        _sync(dev)
        t0 = time.perf_counter()
        job.last = fast_forward(runtime, frames, loc_texts, qa_texts, k, num_options, None, qpc)
        _sync(dev)
        job.add("chain", time.perf_counter() - t0)
        job.add("end_to_end", job.times["decode"][-1] + job.times["chain"][-1])
        if staged.predictions != job.last.predictions or staged.positions != job.last.positions:
            raise RuntimeError("the fast path is not deterministic across runs")  # pragma: no cover
        t0 = time.perf_counter()
        answerer_only_forward(runtime, frames, qa_texts, k, num_options)
        _sync(dev)
        job.add("answerer_only", time.perf_counter() - t0)
    job.memory = _max_memory(job.memory, mem.result)


def _reference_repeat(
    runtime: SevilaRuntime,
    job: _Job,
    qs: list[BenchQuestion],
    setting: Setting,
    num_options: int,
    decoder: str,
    trained_steps: bool = False,
) -> None:
    """One timed repeat of the reference-style path: each question decoded and answered on its own."""
    dev = runtime.device
    with PeakMemory(dev) as mem:
        timer = StageTimer(dev)
        frames = []
        for q in qs:
            with timer.stage("decode"):
                frames.append(sample_frames(q.video, setting.frames, decoder=decoder).frames)
        t0 = time.perf_counter()
        job.last = reference_batch(
            runtime,
            frames,
            qs,
            setting.keyframes,
            num_options,
            stage=timer.stage,
            trained_steps=trained_steps,
        )
        _sync(dev)
        chain = time.perf_counter() - t0
        for name, sec in timer.times.items():
            job.add(name, sec)
        job.add("chain", chain)
        job.add("end_to_end", timer.times["decode"] + chain)
    job.memory = _max_memory(job.memory, mem.result)


def run_bench(
    runtime: SevilaRuntime,
    settings: list[Setting],
    batch_sizes: list[int],
    repeats: int = 3,
    warmup: int = 1,
    reference: bool = False,
    decoder: str = "auto",
    video_frames: int = 300,
    num_options: int = 5,
    decode_workers: int | None = None,
    workdir: str | Path | None = None,
    progress: Progress | None = None,
    questions_per_call: int | None = None,
) -> dict[str, Any]:
    """Time the fast chain (and the reference-style path) and return the JSON-ready report.

    Repeats are interleaved (every batch size, then the reference, then the next repeat) so that a change in
    machine load affects both paths alike; medians are reported."""
    if repeats < 1 or warmup < 0:
        raise InputError("--repeats must be >= 1 and --warmup >= 0")
    if not 2 <= num_options <= 5:
        raise InputError("--num-options must be between 2 and 5")
    say = progress or (lambda _msg: None)
    dev = runtime.device
    max_b = max(batch_sizes)
    if decode_workers is None:  # decord reads are serialised by sevila_tools.video's stderr lock: no threads
        from sevila_tools.video import decord_available

        uses_decord = decoder == "decord" or (decoder == "auto" and decord_available())
        decode_workers = 1 if uses_decord else min(max_b, os.cpu_count() or 1, 8)
    workers = decode_workers
    report: dict[str, Any] = {
        "machine": machine_info(dev),
        "model": {
            **{
                k: runtime.info.get(k)
                for k in ("model", "checkpoint", "random_weights", "build_s", "weight_gib")
            },
            "device": str(dev),
            "precision": runtime.precision.describe(),
            "parameters": part_parameter_counts(runtime.model),
            "attn_implementation": {
                "vision": runtime.model.vision_model.config._attn_implementation,
                "t5": runtime.model.language_model.config._attn_implementation,
            },
            "vit_batch_size": runtime.vit_batch_size,
            "t5_batch_size": runtime.t5_batch_size,
        },
        "config": {
            "settings": [s.label for s in settings],
            "batch_sizes": batch_sizes,
            "repeats": repeats,
            "warmup": warmup,
            "decoder": decoder,
            "video_frames": video_frames,
            "num_options": num_options,
            "decode_workers": workers,
            "reference": reference,
            "questions_per_call": questions_per_call or ("batch" if dev.type == "cuda" else 1),
        },
        "paper": PAPER,
        "results": [],
        "reference": [],
        "agreement": [],
        "speedups": [],
        "speedup": None,
    }
    with contextlib.ExitStack() as stack:
        folder = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        say(f"writing {min(max_b, 8)} synthetic videos ({video_frames}+ frames each)")
        questions = make_questions(
            make_videos(folder, min(max_b, 8), num_frames=video_frames), max_b, num_options
        )
        tok = runtime.tokenizer
        loc_len = min(77, max(len(tok(q.loc_text).input_ids) for q in questions))
        qa_len = min(77, max(len(tok(q.qa_text).input_ids) for q in questions))
        report["config"]["text_tokens"] = {"localizer": loc_len, "answerer": qa_len}
        cfg = runtime.model.config
        report["flops_tflop_per_sample"] = {
            s.label: estimate_flops(cfg, s, loc_len, qa_len) for s in settings
        }
        for setting in settings:
            fast = {b: _Job() for b in batch_sizes}
            ref, ref_eos = _Job(), _Job()
            for _ in range(warmup):
                say(f"{setting.label}: warm-up")
                for b in batch_sizes:
                    _fast_repeat(
                        runtime,
                        _Job(),
                        questions[:b],
                        setting,
                        num_options,
                        decoder,
                        workers,
                        questions_per_call,
                    )
                if reference:
                    _reference_repeat(runtime, _Job(), questions[:1], setting, num_options, decoder)
            for r in range(repeats):
                for b in batch_sizes:
                    say(f"{setting.label}: repeat {r + 1}/{repeats}, fast path batch {b}")
                    _fast_repeat(
                        runtime,
                        fast[b],
                        questions[:b],
                        setting,
                        num_options,
                        decoder,
                        workers,
                        questions_per_call,
                    )
                if reference:
                    say(
                        f"{setting.label}: repeat {r + 1}/{repeats}, reference path, {max_b} questions one by one"
                    )
                    _reference_repeat(runtime, ref, questions, setting, num_options, decoder)
                    _reference_repeat(
                        runtime, ref_eos, questions, setting, num_options, decoder, trained_steps=True
                    )
            for b in batch_sizes:
                report["results"].append(
                    {
                        "setting": setting.label,
                        "frames": setting.frames,
                        "keyframes": setting.keyframes,
                        "batch_size": b,
                        "path": "fast",
                        "stages": {n: _stats(v, b) for n, v in fast[b].times.items()},
                        "memory": fast[b].memory,
                    }
                )
            if not reference:
                continue
            assert ref.last is not None and ref_eos.last is not None and fast[max_b].last is not None
            for path, job in (("reference", ref), ("reference_trained_eos", ref_eos)):
                assert job.last is not None
                steps = job.last.generate_steps
                report["reference"].append(
                    {
                        "setting": setting.label,
                        "frames": setting.frames,
                        "keyframes": setting.keyframes,
                        "batch_size": 1,
                        "questions": max_b,
                        "path": path,
                        "stages": {n: _stats(v, max_b) for n, v in job.times.items()},
                        "memory": job.memory,
                        "generate_steps": {
                            p: round(sum(s[p] for s in steps) / len(steps), 2) for p in steps[0]
                        },
                    }
                )
            report["agreement"].append(
                {"setting": setting.label, **compare_outputs(fast[max_b].last, ref.last)}
            )
            eos_agree = compare_outputs(fast[max_b].last, ref_eos.last)
            report["agreement"][-1]["trained_eos_answers_equal"] = eos_agree["answers_equal"]

            def per_sample(job: _Job, stage: str) -> float:
                return statistics.median(job.times[stage]) / max_b

            for b in batch_sizes:
                st = report["results"][-len(batch_sizes) + batch_sizes.index(b)]["stages"]
                report["speedups"].append(
                    {
                        "setting": setting.label,
                        "batch_size": b,
                        "chain": round(per_sample(ref, "chain") / st["chain"]["s_per_sample"], 2),
                        "end_to_end": round(
                            per_sample(ref, "end_to_end") / st["end_to_end"]["s_per_sample"], 2
                        ),
                        "chain_vs_trained_eos": round(
                            per_sample(ref_eos, "chain") / st["chain"]["s_per_sample"], 2
                        ),
                    }
                )
    if report["speedups"]:
        first = report["speedups"][0]["setting"]
        rows = [s for s in report["speedups"] if s["setting"] == first]
        pick = next((s for s in rows if s["batch_size"] == 8), rows[-1])
        report["speedup"] = pick["chain"]
        report["speedup_vs_trained_eos"] = pick["chain_vs_trained_eos"]
        report["speedup_basis"] = (
            f"forward chain (decoded frames -> answers), setting {first}: reference-style path s/sample "
            f"(one question at a time, generate(max_new_tokens=30)) / fast path s/sample at batch {pick['batch_size']}"
            "; speedup_vs_trained_eos: the same with generate stopped where a trained model emits </s> "
            "(localizer 2 tokens, answerer 3)"
        )
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


__all__ = [
    "PAPER",
    "BenchQuestion",
    "ChainOutput",
    "PeakMemory",
    "Setting",
    "StageTimer",
    "answerer_only_forward",
    "build_full_runtime",
    "build_random_runtime",
    "build_meta_model",
    "compare_outputs",
    "decode_batch",
    "default_questions_per_call",
    "estimate_flops",
    "fast_forward",
    "full_config",
    "machine_info",
    "make_questions",
    "make_videos",
    "parse_batch_sizes",
    "parse_settings",
    "part_parameter_counts",
    "random_init_",
    "reference_batch",
    "run_bench",
    "weight_bytes",
]
