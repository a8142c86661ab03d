"""Building a :class:`~sevila_tools.runtime.SevilaRuntime` from a model source (``--model``) and a SeViLA
checkpoint (``--checkpoint``); sources, defaults, merge rules and precision: ``docs/method.md``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import nn

from sevila_tools.checkpoint import alias_map, check_coverage, load_sevila_checkpoint, read_state_dict
from sevila_tools.errors import (
    OFFLINE_HINT,
    CheckpointError,
    InputError,
    ModelLoadError,
    SevilaError,
    error_line,
    first_line,
)
from sevila_tools.files import atomic_write
from sevila_tools.modeling import SevilaModel
from sevila_tools.runtime import Precision, SevilaRuntime
from sevila_tools.schemas import CLI, DEFAULT_MODEL, ModelOptions
from sevila_tools.tiny import TINY_NAME, TRAINED_PRESETS, preset_folder, tiny_model, tiny_tokenizer

log = logging.getLogger("sevila_tools.loading")

DEFAULT_CHECKPOINT = "hf://Shoubin/SeViLA/sevila_pretrained.pth"
SEVILA_CONFIG = "sevila_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA if available else CPU; ``cuda`` without a GPU is a clear error."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA GPU is available")
    return torch.device(device)


def offline() -> bool:
    """True when Hugging Face offline mode is on."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def hub_reachable(repo: str, timeout: float = 5.0) -> str | None:
    """None when the hub answers for ``repo`` within ``timeout`` s, else a one-line reason (a quick probe, so an
    unreachable hub fails in seconds instead of through the download client's retries)."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(repo, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure is the reason
        return error_line(exc)[:200]
    return None


def _cached(repo: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    got = try_to_load_from_cache(repo, filename)
    return got if isinstance(got, str) else None


def _hub_file(spec: str) -> Path:
    """Download ``hf://<owner>/<repo>/<file>`` (or return the cached copy)."""
    parts = spec[len("hf://") :].split("/")
    if len(parts) < 3:
        raise InputError(f"hub checkpoint must look like hf://owner/repo/file, got {spec!r}")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    from huggingface_hub import hf_hub_download

    cached = _cached(repo, filename)
    if not offline() and cached is None:
        why = hub_reachable(repo)
        if why is not None:
            raise ModelLoadError(f"cannot download checkpoint {spec}: the hub is unreachable ({why}); "
                                 "pass a local file, or set HF_HUB_OFFLINE=1 to use cached files")
    try:
        return Path(cached) if cached is not None and offline() else Path(hf_hub_download(repo, filename))
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one line
        hint = " (offline mode is on and the file is not in the local cache)" if offline() else ""
        raise ModelLoadError(f"cannot get checkpoint {spec}{hint}: {type(exc).__name__}") from exc


# ------------------------------------------------------------------------------------------------ precision
def apply_precision(model: SevilaModel, precision: Precision) -> None:
    """Cast parts in place: ViT Conv/Linear weights to the ViT dtype (LayerNorms and embeddings stay fp32, as
    LAVIS does), T5 to its dtype, Q-Formers/projections/LayerNorms to fp32."""
    for module in model.vision_model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            module.to(precision.vit)
    model.language_model.to(precision.t5)
    for name in (
        "ln_vision",
        "ln_vision_loc",
        "qformer",
        "qformer_loc",
        "language_projection",
        "language_projection_loc",
    ):
        getattr(model, name).to(precision.qformer)
    model.query_tokens.data = model.query_tokens.data.to(precision.qformer)
    model.query_tokens_loc.data = model.query_tokens_loc.data.to(precision.qformer)


# ------------------------------------------------------------------------------------------------ base sources
def _from_hf_blip2(source: str) -> tuple[SevilaModel, Any, dict[str, str]]:
    """Assemble a SevilaModel from a Hugging Face BLIP-2 Flan-T5 checkpoint (id or folder)."""
    import transformers
    from transformers import AutoTokenizer, Blip2Config, Blip2ForConditionalGeneration

    from sevila_tools.modeling import prepare_config

    transformers.logging.set_verbosity_error()
    local = Path(source).is_dir() or offline()
    if not local:
        why = hub_reachable(source)
        if why is not None and _cached(source, "config.json") is None:
            raise ModelLoadError(f"cannot download base model {source!r}: the hub is unreachable ({why}); pass a "
                                 "local folder, or set HF_HUB_OFFLINE=1 to use a cached id")
        local = why is not None  # unreachable but cached: read the cache without network retries
    try:
        config = prepare_config(Blip2Config.from_pretrained(source, local_files_only=local))
        hf, info = Blip2ForConditionalGeneration.from_pretrained(
            source, config=config, dtype=torch.float32, output_loading_info=True, local_files_only=local
        )
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError) as exc:
        hint = " (offline mode is on: use a local folder or a cached id)" if offline() else ""
        first = first_line(exc)[:200]
        raise ModelLoadError(f"cannot load base model {source!r}{hint}: {first}") from exc
    if getattr(config, "use_decoder_only_language_model", False):
        raise ModelLoadError(f"{source} is not a BLIP-2 Flan-T5 model (SeViLA needs the T5 text side)")
    lm = hf.language_model
    missing = set(info.get("missing_keys", []))
    for stack in ("encoder", "decoder"):
        key = f"language_model.{stack}.embed_tokens.weight"
        emb = getattr(lm, stack).embed_tokens
        if key not in missing and not torch.equal(emb.weight, lm.shared.weight):
            raise ModelLoadError(
                f"{source}: {key} differs from language_model.shared.weight; not a T5 checkpoint"
            )
        getattr(lm, stack).embed_tokens = lm.shared
    with torch.device("meta"):
        model = SevilaModel(config)
    model.vision_model = hf.vision_model
    model.language_model = lm
    model.qformer = hf.qformer
    model.query_tokens = hf.query_tokens
    model.language_projection = hf.language_projection
    post = hf.vision_model.post_layernorm  # LAVIS ln_vision is stored as HF post_layernorm (eps 1e-6 there)
    model.ln_vision = nn.LayerNorm(post.normalized_shape, eps=1e-5)
    model.ln_vision.load_state_dict(post.state_dict())
    import copy

    model.ln_vision_loc = copy.deepcopy(model.ln_vision)
    model.qformer_loc = copy.deepcopy(model.qformer)
    model.query_tokens_loc = nn.Parameter(model.query_tokens.detach().clone())
    model.language_projection_loc = copy.deepcopy(model.language_projection)
    base = f"BLIP-2 base {source}"
    sources = {
        "vision_model": base,
        "language_model": base,
        "answerer": base,
        "localizer": f"copy of answerer ({base})",
    }
    return model, tokenizer, sources


def _from_converted(folder: Path) -> tuple[SevilaModel, Any, dict[str, str], dict[str, Any]]:
    """Load a self-contained folder written by :func:`save_converted`."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Blip2Config

    meta = json.loads((folder / SEVILA_CONFIG).read_text())
    config = Blip2Config.from_dict(meta["blip2_config"])
    with torch.device("meta"):
        model = SevilaModel(config)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}
    aliases = alias_map(model)
    check_coverage(model, sd, _empty_report(), str(folder / WEIGHTS_FILE))
    missing = [k for k in model.state_dict() if k not in sd and k not in aliases]
    if missing:
        raise CheckpointError(
            f"{folder / WEIGHTS_FILE}: {len(missing)} keys missing: {', '.join(missing[:8])}"
        )
    model.load_state_dict(sd, strict=False, assign=True)
    lm = model.language_model
    lm.encoder.embed_tokens = lm.shared
    lm.decoder.embed_tokens = lm.shared
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return model, tokenizer, dict(meta.get("sources", {})), meta


def _empty_report() -> Any:
    from sevila_tools.checkpoint import ConversionReport

    return ConversionReport()


def is_converted_folder(path: str | Path) -> bool:
    """True if ``path`` is a folder written by ``sevila convert``."""
    return (Path(path) / SEVILA_CONFIG).is_file()


def build_model(
    model: str = DEFAULT_MODEL, checkpoint: str | None = "auto", trust_checkpoint: bool = False
) -> tuple[SevilaModel, Any, dict[str, Any]]:
    """Build the model + tokenizer on CPU in fp32; return them with an info dict (sources, random flag)."""
    info: dict[str, Any] = {"model": model, "checkpoint": None, "random_weights": False}
    if model == TINY_NAME:
        net, tok = tiny_model(), tiny_tokenizer()
        sources = {
            p: "tiny random init (seeded)"
            for p in ("vision_model", "language_model", "answerer", "localizer")
        }
        info["random_weights"] = True
        default_ckpt = None
    elif model in TRAINED_PRESETS:
        net, tok, sources, _ = _from_converted(preset_folder(model))
        default_ckpt = None
    elif is_converted_folder(model):
        net, tok, sources, meta = _from_converted(Path(model))
        info["random_weights"] = bool(meta.get("random_weights", False))
        default_ckpt = None
    else:
        if Path(model).exists() and not Path(model).is_dir():
            raise InputError(f"--model must be a model id or folder, got a file: {model}")
        net, tok, sources = _from_hf_blip2(model)
        default_ckpt = DEFAULT_CHECKPOINT
    ckpt = default_ckpt if checkpoint in (None, "auto") else checkpoint
    if ckpt and ckpt.lower() != "none":
        path = _hub_file(ckpt) if ckpt.startswith("hf://") else Path(ckpt)
        report = load_sevila_checkpoint(net, path, trusted=trust_checkpoint, base_sources=sources)
        sources = report.sources
        info["checkpoint"] = ckpt
        info["checkpoint_path"] = str(Path(path).resolve())
        if report.dropped:
            info["dropped_keys"] = report.dropped
        if report.metadata.get("format") == "sevila_tools":
            info["checkpoint_meta"] = {
                k: report.metadata[k] for k in ("stage", "step", "epoch") if k in report.metadata
            }
    info["sources"] = sources
    return net.eval(), tok, info


def preset_has_random_weights(model: str) -> bool:
    """Whether the ``--model`` value names a preset with random weights (known before anything loads)."""
    return model == TINY_NAME


def load_runtime(
    model: str = DEFAULT_MODEL,
    checkpoint: str | None = "auto",
    device: str = "auto",
    vit_dtype: str | None = None,
    t5_dtype: str | None = None,
    trust_checkpoint: bool = False,
) -> SevilaRuntime:
    """Load SeViLA once; the returned runtime is shared by every tool.

    ``vit_dtype`` / ``t5_dtype`` (``fp32``, ``fp16``, ``bf16``; env ``SEVILA_VIT_DTYPE`` / ``SEVILA_T5_DTYPE``)
    override the precision policy (CUDA: ViT fp16, T5 bf16; CPU: fp32).

    >>> rt = load_runtime("tiny-random", device="cpu")  # doctest: +SKIP
    """
    dev = resolve_device(device)
    vit_dtype = vit_dtype or os.environ.get("SEVILA_VIT_DTYPE") or None
    t5_dtype = t5_dtype or os.environ.get("SEVILA_T5_DTYPE") or None
    for name, value in (("vit_dtype", vit_dtype), ("t5_dtype", t5_dtype)):
        if value is not None and value not in ("fp32", "fp16", "bf16"):
            raise InputError(f"{name} must be fp32, fp16 or bf16 (got {value!r})")
    net, tok, info = build_model(model, checkpoint, trust_checkpoint)
    precision = Precision.for_device(dev, vit=vit_dtype, t5=t5_dtype)
    net.to(dev)
    apply_precision(net, precision)
    net.freeze(())
    info.update(device=str(dev), precision=precision.describe())
    return SevilaRuntime(model=net, tokenizer=tok, device=dev, precision=precision, info=info)


def save_converted(
    runtime_or_model: SevilaRuntime | SevilaModel,
    tokenizer: Any,
    folder: str | Path,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write a self-contained local model folder (safetensors weights, configs, tokenizer)."""
    from safetensors.torch import save_file

    model = runtime_or_model.model if isinstance(runtime_or_model, SevilaRuntime) else runtime_or_model
    info = info or (runtime_or_model.info if isinstance(runtime_or_model, SevilaRuntime) else {})
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"output folder is not empty: {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    aliases = alias_map(model)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in aliases}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(sd, str(tmp), metadata={"format": "sevila_tools"}))
    tokenizer.save_pretrained(str(folder))
    meta = {
        "format": "sevila_tools",
        "format_version": FORMAT_VERSION,
        "blip2_config": model.config.to_dict(),
        "sources": info.get("sources", {}),
        "random_weights": bool(info.get("random_weights", False)),
        "converted_from": {"model": info.get("model"), "checkpoint": info.get("checkpoint")},
    }
    (folder / SEVILA_CONFIG).write_text(json.dumps(meta, indent=2, default=str))
    return folder


class ConvertConfig(ModelOptions):
    """``sevila convert``: the model block and where the converted folder goes."""

    out: Path = Field(description="Output folder (must be empty or absent).",
                      json_schema_extra=CLI(argument=True, metavar="DIR"))


def run_convert(cfg: ConvertConfig) -> dict[str, Any]:
    """Build the model and write a self-contained folder (:func:`save_converted`) that loads offline."""
    net, tok, info = build_model(cfg.model, cfg.checkpoint, cfg.trust_checkpoint)
    folder = save_converted(net, tok, cfg.out, info)
    return {"folder": str(folder), "sources": info["sources"], "random_weights": info["random_weights"]}


class InfoConfig(ModelOptions):
    """``sevila info``: the model block; without a model, the default one is described if it loads."""

    model: str | None = Field(None, description="Model to describe (default: the BLIP-2 SeViLA builds on, if "
                              "it loads).", json_schema_extra=ModelOptions.model_fields["model"].json_schema_extra)


def run_info(cfg: InfoConfig) -> dict[str, Any]:
    """Versions and device; with a model that loads, where each part comes from, precision and token ids."""
    from sevila_tools import __version__
    from sevila_tools.provenance import gpu_name, versions

    data: dict[str, Any] = {"sevila_tools": __version__, "versions": versions(),
                            "device": str(resolve_device(cfg.device)), "cuda": gpu_name()}
    try:
        rt = load_runtime(cfg.model or DEFAULT_MODEL, cfg.checkpoint, cfg.device, trust_checkpoint=cfg.trust_checkpoint)
    except SevilaError as exc:
        if cfg.model:
            raise
        data["model"] = f"{DEFAULT_MODEL} did not load: {error_line(exc)}{OFFLINE_HINT}"
        return data
    ids = rt.ids
    return {**data, "model": rt.info.get("model"), "checkpoint": rt.info.get("checkpoint"),
            "random_weights": rt.random_weights, "sources": rt.info.get("sources"),
            "precision": rt.precision.describe(), "parameters": sum(p.numel() for p in rt.model.parameters()),
            "token_ids": {"yes": ids.yes, "no": ids.no, "letters": list(ids.letters), "option": ids.option}}


__all__ = [
    "ConvertConfig",
    "InfoConfig",
    "DEFAULT_CHECKPOINT",
    "apply_precision",
    "build_model",
    "is_converted_folder",
    "load_runtime",
    "read_state_dict",
    "resolve_device",
    "run_convert",
    "run_info",
    "save_converted",
]
