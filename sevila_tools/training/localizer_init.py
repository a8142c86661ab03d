"""Where the Localizer starts (``init``): BLIP-2's Q-Former read from the base model's own files.

The official code overwrites the Localizer with ``qformer_loc.pth``, "a copy of the original BLIP-2 Q-Former"
(``load_qformer_loc()``), whatever Answerer the checkpoint holds. ``init=base`` does the same from the base model
the run was loaded with, so a fine-tuned Answerer in ``--checkpoint`` never leaks into the Localizer's start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sevila_tools.errors import InputError
from sevila_tools.modeling import SevilaModel, branch_of_key

#: answerer-side name prefixes (base files and toolkit folders) -> the Localizer's
_TO_LOCALIZER = {
    "qformer.": "qformer_loc.",
    "language_projection.": "language_projection_loc.",
    "ln_vision.": "ln_vision_loc.",
    "vision_model.post_layernorm.": "ln_vision_loc.",  # HF BLIP-2 stores LAVIS ln_vision here
}
#: answerer sources that mean "the weights in the model folder are the base ones"
_BASE_SOURCES = ("BLIP-2 base", "tiny random init")


def localizer_key(key: str) -> str | None:
    """The Localizer key an answerer-side key of a base file fills (``None``: not part of the Q-Former branch)."""
    if key == "query_tokens":
        return "query_tokens_loc"
    for old, new in _TO_LOCALIZER.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def _hf_files(name: str) -> list[Path]:
    """The safetensors files of a BLIP-2 folder or a cached hub id (never downloads)."""
    folder = Path(name)
    if folder.is_dir():
        index = folder / "model.safetensors.index.json"
        single = folder / "model.safetensors"
        shards = json.loads(index.read_text())["weight_map"].values() if index.is_file() else []
        files = [folder / s for s in sorted(set(shards))] or ([single] if single.is_file() else [])
    else:
        from huggingface_hub import try_to_load_from_cache

        index = try_to_load_from_cache(name, "model.safetensors.index.json")
        if isinstance(index, str):
            shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
            found = [try_to_load_from_cache(name, s) for s in shards]
            files = [Path(f) for f in found if isinstance(f, str)]
        else:
            single = try_to_load_from_cache(name, "model.safetensors")
            files = [Path(single)] if isinstance(single, str) else []
    if not files:
        raise InputError(
            f"cannot find the base model's safetensors files for {name}; use init=answerer-copy or init=checkpoint"
        )
    return files


def _read(files: list[Path]) -> dict[str, torch.Tensor]:
    """The Q-Former branch tensors of safetensors files, renamed to the Localizer's keys."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                target = localizer_key(key)
                if target is not None:
                    out[target] = f.get_tensor(key)
    return out


def base_localizer_state(info: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """BLIP-2's Q-Former branch of the run's base model as Localizer weights, and where it came from.

    ``info`` is the runtime's (``model`` and ``sources``): ``tiny-random`` rebuilds the seeded tiny model; a
    folder from ``sevila convert`` is read when its Answerer is still the base one; a BLIP-2 id or folder is
    read from its safetensors files (only the Q-Former tensors)."""
    from sevila_tools.loading import SEVILA_CONFIG, WEIGHTS_FILE, is_converted_folder
    from sevila_tools.tiny import TINY_NAME, tiny_model

    name = str(info.get("model"))
    if name == TINY_NAME:
        sd = {localizer_key(k): v for k, v in tiny_model().state_dict().items() if branch_of_key(k) == "answerer"}
        return {k: v for k, v in sd.items() if k is not None}, "base Q-Former of tiny-random (seeded)"
    if is_converted_folder(name):
        meta = json.loads((Path(name) / SEVILA_CONFIG).read_text())
        src = str(meta.get("sources", {}).get("answerer", ""))
        if not src.startswith(_BASE_SOURCES):
            raise InputError(
                f"{name} holds no base Q-Former (its answerer comes from {src or 'unknown'}); load the BLIP-2 "
                "base with --model, or use init=checkpoint / init=answerer-copy"
            )
        return _read([Path(name) / WEIGHTS_FILE]), f"base Q-Former of {name} ({src})"
    return _read(_hf_files(name)), f"BLIP-2 Q-Former of the base model {name}"


def load_base_localizer(model: SevilaModel, info: dict[str, Any]) -> str:
    """Copy BLIP-2's Q-Former (from the base model's files) into the Localizer; returns the source."""
    sd, source = base_localizer_state(info)
    own = {k: v for k, v in model.state_dict().items() if branch_of_key(k) == "localizer"}
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    if missing or extra:
        raise InputError(
            f"the base Q-Former does not fit the Localizer ({len(missing)} missing, {len(extra)} unexpected "
            f"keys, first: {(missing or extra)[0]}); use init=answerer-copy or init=checkpoint"
        )
    with torch.no_grad():
        for key, value in sd.items():
            if value.shape != own[key].shape:
                raise InputError(f"the base Q-Former's {key} has shape {tuple(value.shape)}, not {tuple(own[key].shape)}")
            own[key].copy_(value.to(own[key].dtype))
    return source
