"""SeViLA's real architecture with random weights, built on the meta device (``sevila bench --size full``)."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from sevila_tools.benchmarks.harness import GIB, Setting, sync
from sevila_tools.errors import InputError
from sevila_tools.runtime import Precision, SevilaRuntime


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
    )  # SevilaModel's prepare_config then sets dense_act_fn="gelu"
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
    sync(dev)
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


__all__ = [
    "build_full_runtime",
    "build_meta_model",
    "build_random_runtime",
    "estimate_flops",
    "full_config",
    "part_parameter_counts",
    "random_init_",
    "weight_bytes",
]
