"""SeViLA checkpoints: LAVIS-to-toolkit key conversion, strict coverage checks, merge rules and safe loading.

Accepted files, the key mapping and what happens to each part: ``docs/method.md``, "Checkpoints".
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sevila_tools.errors import CheckpointError, error_line, first_line
from sevila_tools.modeling import BRANCH_MODULES, SevilaModel, branch_of_key

log = logging.getLogger("sevila_tools.checkpoint")

TOOLKIT_FORMAT = "sevila_tools"
#: parameters of the toolkit model that no checkpoint needs to provide
OPTIONAL_KEYS = re.compile(r"^vision_model\.post_layernorm\.")

DROPPED_FAMILIES: dict[str, re.Pattern[str]] = {
    "position_ids buffer": re.compile(r"^Qformer(_loc)?\.bert\.embeddings\.position_ids$"),
    "text-only Q-Former parts": re.compile(
        r"^Qformer(_loc)?\.(cls\.|bert\.embeddings\.(word|position)_embeddings\.|"
        r"bert\.encoder\.layer\.\d+\.(intermediate|output)\.)"
    ),
}

_VIT_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^visual_encoder\.cls_token$"), "vision_model.embeddings.class_embedding"),
    (re.compile(r"^visual_encoder\.pos_embed$"), "vision_model.embeddings.position_embedding"),
    (
        re.compile(r"^visual_encoder\.patch_embed\.proj\.(weight|bias)$"),
        r"vision_model.embeddings.patch_embedding.\1",
    ),
    (
        re.compile(r"^visual_encoder\.blocks\.(\d+)\.norm1\.(.*)$"),
        r"vision_model.encoder.layers.\1.layer_norm1.\2",
    ),
    (
        re.compile(r"^visual_encoder\.blocks\.(\d+)\.norm2\.(.*)$"),
        r"vision_model.encoder.layers.\1.layer_norm2.\2",
    ),
    (
        re.compile(r"^visual_encoder\.blocks\.(\d+)\.attn\.qkv\.weight$"),
        r"vision_model.encoder.layers.\1.self_attn.qkv.weight",
    ),
    (
        re.compile(r"^visual_encoder\.blocks\.(\d+)\.attn\.proj\.(.*)$"),
        r"vision_model.encoder.layers.\1.self_attn.projection.\2",
    ),
    (
        re.compile(r"^visual_encoder\.blocks\.(\d+)\.mlp\.(fc[12])\.(.*)$"),
        r"vision_model.encoder.layers.\1.mlp.\2.\3",
    ),
]
_QKV_BIAS = re.compile(r"^visual_encoder\.blocks\.(\d+)\.attn\.([qv])_bias$")


def _qformer_key(rest: str) -> str:
    rest = rest.replace("embeddings.LayerNorm.", "layernorm.")
    return rest.replace("attention.self.", "attention.attention.")  # also matches crossattention.self.


def lavis_key_to_toolkit(key: str) -> str | None:
    """Map one LAVIS key to the toolkit name (None when the key maps nowhere). ViT q/v biases are merged
    separately by :func:`convert_lavis_state_dict`."""
    for prefix, new in (("Qformer_loc.bert.", "qformer_loc."), ("Qformer.bert.", "qformer.")):
        if key.startswith(prefix):
            return new + _qformer_key(key[len(prefix) :])
    for old, new in (
        ("t5_proj_loc.", "language_projection_loc."),
        ("t5_proj.", "language_projection."),
        ("ln_vision_loc.", "ln_vision_loc."),
        ("ln_vision.", "ln_vision."),
        ("t5_model.", "language_model."),
    ):
        if key.startswith(old):
            return new + key[len(old) :]
    if key in ("query_tokens", "query_tokens_loc"):
        return key
    for pattern, repl in _VIT_RULES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return None


def is_lavis_naming(keys: list[str]) -> bool:
    """True if the keys use LAVIS names (``Qformer``, ``t5_proj``, ``visual_encoder``, ``t5_model``)."""
    return any(k.startswith(("Qformer", "t5_proj", "visual_encoder.", "t5_model.")) for k in keys)


@dataclass
class ConversionReport:
    """What a conversion did: dropped keys per family and keys that map nowhere."""

    dropped: dict[str, int] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)


def convert_lavis_state_dict(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Convert LAVIS/SeViLA names to toolkit names (docs/method.md, "Checkpoints")."""
    out: dict[str, torch.Tensor] = {}
    report = ConversionReport()
    qv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        family = next((name for name, pat in DROPPED_FAMILIES.items() if pat.match(key)), None)
        if family:
            report.dropped[family] = report.dropped.get(family, 0) + 1
            continue
        m = _QKV_BIAS.match(key)
        if m:
            qv.setdefault(m.group(1), {})[m.group(2)] = value
            continue
        new = lavis_key_to_toolkit(key)
        if new is None:
            report.unmapped.append(key)
        else:
            out[new] = value
    for block, parts in qv.items():
        if set(parts) != {"q", "v"}:
            report.unmapped.append(
                f"visual_encoder.blocks.{block}.attn.{next(iter(parts))}_bias (its pair is missing)"
            )
            continue
        q, v = parts["q"], parts["v"]
        out[f"vision_model.encoder.layers.{block}.self_attn.qkv.bias"] = torch.cat(
            [q, torch.zeros_like(v), v]
        )
    return out, report


def toolkit_to_lavis_key(key: str) -> str:
    """Inverse naming (toolkit -> LAVIS) for the trainable branches; used to export LAVIS-compatible files."""
    for prefix, old in (("qformer_loc.", "Qformer_loc.bert."), ("qformer.", "Qformer.bert.")):
        if key.startswith(prefix):
            rest = key[len(prefix) :].replace("layernorm.", "embeddings.LayerNorm.", 1)
            return old + rest.replace("attention.attention.", "attention.self.")
    for new, old in (("language_projection_loc.", "t5_proj_loc."), ("language_projection.", "t5_proj.")):
        if key.startswith(new):
            return old + key[len(new) :]
    return key


# ---------------------------------------------------------------------------------------------- reading files
def _looks_like_torch_file(path: Path) -> bool:
    """``torch.save`` writes a zip archive (``PK``) or, in the legacy format, a pickle (protocol byte ``0x80``)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return head == b"PK" or head[:1] == b"\x80"


def torch_load(path: Path, trusted: bool, trust_hint: str = "pass --trust-checkpoint") -> Any:
    """``torch.load`` on the CPU, ``weights_only`` unless ``trusted``; every failure is one CheckpointError line
    (a refused pickle ends with ``trust_hint``)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        if trusted:
            raise CheckpointError(f"cannot read checkpoint {path}: not a valid pickle ({exc})") from exc
        raise CheckpointError(
            f"{path} contains pickled Python objects that weights_only loading refuses ({first_line(exc)[:160]}); "
            f"if you trust this file, {trust_hint}"
        ) from exc
    except ModuleNotFoundError as exc:
        raise CheckpointError(f"cannot unpickle {path}: module {exc.name!r} is not installed") from exc
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot read checkpoint {path}: {error_line(exc)}") from exc


def read_state_dict(
    path: str | Path, trusted: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file; return (state dict, metadata). Pickles load with ``weights_only=True`` unless
    ``trusted`` (the file can then run code: only for files you trust)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, expected a file: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                return {k: f.get_tensor(k) for k in f.keys()}, meta
        except Exception as exc:  # noqa: BLE001 - re-raised as a one-line user error
            raise CheckpointError(f"cannot read safetensors checkpoint {path}: {exc}") from exc
    if not _looks_like_torch_file(path):
        raise CheckpointError(
            f"{path} is not a checkpoint: expected a PyTorch file (.pth/.pt, a zip or pickle) or .safetensors"
        )
    obj = torch_load(path, trusted)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    meta = {k: v for k, v in obj.items() if k != "model" and not isinstance(v, torch.Tensor)}
    sd = obj["model"] if isinstance(obj.get("model"), dict) else obj
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors (keys: {', '.join(list(sd)[:5])})")
    return tensors, meta


def to_toolkit_names(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Convert a state dict of either naming to toolkit names."""
    if is_lavis_naming(list(sd)):
        return convert_lavis_state_dict(sd)
    return dict(sd), ConversionReport()


# ---------------------------------------------------------------------------------------------- applying
def _fmt(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def alias_map(model: SevilaModel) -> dict[str, str]:
    """State-dict keys that alias an earlier key's tensor (tied T5 input embeddings) -> that earlier key."""
    seen: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in seen:
            aliases[name] = seen[id(t)]
        else:
            seen[id(t)] = name
    return aliases


def expected_keys(model: SevilaModel) -> dict[str, list[str]]:
    """Keys each part must provide when present: answerer, localizer, vision_model, language_model."""
    aliases = alias_map(model)
    parts: dict[str, list[str]] = {}
    for name in model.state_dict():
        if name in aliases or OPTIONAL_KEYS.match(name):
            continue
        part = branch_of_key(name)
        if part:
            parts.setdefault(part, []).append(name)
    return parts


def check_coverage(
    model: SevilaModel, sd: dict[str, torch.Tensor], report: ConversionReport, source: str
) -> list[str]:
    """Validate a toolkit-named state dict against the model; return the parts it fully provides.

    Raises :class:`CheckpointError` naming unmapped/unexpected keys, partially provided parts and shape
    mismatches."""
    if report.unmapped:
        raise CheckpointError(
            f"{source}: {len(report.unmapped)} keys map to no SeViLA module: {_fmt(report.unmapped)}"
        )
    own = model.state_dict()
    unexpected = sorted(k for k in sd if k not in own)
    if unexpected:
        raise CheckpointError(f"{source}: {len(unexpected)} unexpected keys: {_fmt(unexpected)}")
    bad_shapes = [
        f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in sd if sd[k].shape != own[k].shape
    ]
    if bad_shapes:
        raise CheckpointError(f"{source}: {len(bad_shapes)} shape mismatches: {_fmt(bad_shapes, 4)}")
    for alias, primary in alias_map(model).items():
        if alias in sd and primary in sd and not torch.equal(sd[alias], sd[primary]):
            raise CheckpointError(f"{source}: {alias} differs from {primary}, but SeViLA's T5 ties them")
    provided = []
    for part, keys in expected_keys(model).items():
        present = [k for k in keys if k in sd]
        if not present:
            continue
        missing = [k for k in keys if k not in sd]
        if missing:
            raise CheckpointError(
                f"{source}: the {part} part is incomplete, {len(missing)} of {len(keys)} keys missing: {_fmt(missing)}"
            )
        provided.append(part)
    if not provided:
        raise CheckpointError(f"{source}: no SeViLA parameters found (first keys: {_fmt(sorted(sd), 5)})")
    return provided


def apply_state_dict(model: SevilaModel, sd: dict[str, torch.Tensor], parts: list[str]) -> None:
    """Copy the given parts into the model (dtype of the model is kept)."""
    wanted = {k: v for k, v in sd.items() if branch_of_key(k) in parts}
    with torch.no_grad():
        own = model.state_dict()
        for k, v in wanted.items():
            own[k].copy_(v.to(own[k].dtype))


@dataclass
class LoadReport:
    """Where each part of the model came from."""

    sources: dict[str, str]
    dropped: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def load_sevila_checkpoint(
    model: SevilaModel, path: str | Path, trusted: bool = False, base_sources: dict[str, str] | None = None
) -> LoadReport:
    """Load a SeViLA checkpoint into ``model`` with strict checks and SeViLA's merge rules.

    * both branches present -> both loaded;
    * localizer only -> answerer kept from the base weights (the merge users of the official repo need);
    * answerer only -> localizer becomes a copy of the loaded answerer;
    * ViT / T5 keys (full LAVIS state dict) -> must be complete and are loaded too.
    """
    raw, meta = read_state_dict(path, trusted=trusted)
    sd, report = to_toolkit_names(raw)
    parts = check_coverage(model, sd, report, str(path))
    apply_state_dict(model, sd, parts)
    sources = dict(base_sources or {})
    for part in parts:
        sources[part] = f"checkpoint {Path(path).name}"
    if "localizer" not in parts and "answerer" in parts:
        model.copy_answerer_to_localizer()
        sources["localizer"] = f"copy of the answerer from {Path(path).name}"
    elif "localizer" in parts and "answerer" not in parts:
        log.info(
            "%s holds only localizer weights; answerer kept from %s", path, sources.get("answerer", "base")
        )
    return LoadReport(sources=sources, dropped=report.dropped, metadata=meta)


__all__ = [
    "BRANCH_MODULES",
    "CheckpointError",
    "ConversionReport",
    "LoadReport",
    "apply_state_dict",
    "check_coverage",
    "convert_lavis_state_dict",
    "expected_keys",
    "lavis_key_to_toolkit",
    "load_sevila_checkpoint",
    "read_state_dict",
    "toolkit_to_lavis_key",
]
