"""Moment-DETR checkpoints: which options to build with, strict state-dict check, load (``weights_only=True``
unless trusted), save, and the process-wide memo of loaded models. File facts: ``docs/selectors.md``."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sevila_tools.checkpoint import torch_load
from sevila_tools.errors import CheckpointError
from sevila_tools.selectors.memo import file_identity, shared_model
from sevila_tools.selectors.moment_detr.model import MomentDETR, build_moment_detr, options_dict

__all__ = ["check_state_dict", "load_moment_detr", "save_moment_detr", "shared_moment_detr"]


def _names(names: Sequence[str], limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def check_state_dict(model: nn.Module, state_dict: dict[str, Tensor], source: str = "checkpoint") -> None:
    """Raise a one-line :class:`CheckpointError` naming missing keys, unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(getattr(state_dict[k], "shape", ())) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {_names(mismatched, 4)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match the Moment-DETR (CLIP-only) layout; " + "; ".join(problems)
        )


def _opt_from_state_dict(sd: dict[str, Tensor]) -> dict[str, Any]:
    """Architecture options inferred from tensor shapes (``nheads`` cannot be inferred: 8 assumed)."""
    try:
        hidden = int(sd["query_embed.weight"].shape[1])
        return {
            "ctx_mode": "video_tef",
            "use_tef": True,
            "v_feat_dim": int(sd["input_vid_proj.0.LayerNorm.weight"].shape[0]),
            "t_feat_dim": int(sd["input_txt_proj.0.LayerNorm.weight"].shape[0]),
            "hidden_dim": hidden,
            "num_queries": int(sd["query_embed.weight"].shape[0]),
            "max_q_l": int(sd["txt_position_embed.position_embeddings.weight"].shape[0]),
            "dim_feedforward": int(sd["transformer.encoder.layers.0.linear1.weight"].shape[0]),
            "enc_layers": len({k.split(".")[3] for k in sd if k.startswith("transformer.encoder.layers.")}),
            "dec_layers": len({k.split(".")[3] for k in sd if k.startswith("transformer.decoder.layers.")}),
            "n_input_proj": len({k.split(".")[1] for k in sd if k.startswith("input_vid_proj.")}),
            "contrastive_align_loss": any(k.startswith("contrastive_align_projection_") for k in sd),
        }
    except KeyError as exc:
        raise CheckpointError(
            f"checkpoint does not match the Moment-DETR (CLIP-only) layout; missing keys: {exc.args[0]}"
        ) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read Moment-DETR options {path}: {exc}") from None


def _read_pickled(path: Path, trusted: bool) -> tuple[dict[str, Any], Any]:
    """State dict and pickled options of a ``.ckpt`` (``torch.load``, ``weights_only`` unless trusted)."""
    if trusted:
        warnings.warn(
            f"loading {path} with weights_only=False: unpickling can execute arbitrary code; "
            "only do this for checkpoints from a trusted source",
            UserWarning,
            stacklevel=3,
        )
    ckpt = torch_load(path, trusted, trust_hint="pass trusted=True (CLI: --trust-checkpoint)")
    if isinstance(ckpt, dict) and "model" in ckpt:
        return ckpt["model"], ckpt.get("opt")
    if isinstance(ckpt, dict) and all(isinstance(v, Tensor) for v in ckpt.values()):
        return ckpt, None
    keys = list(ckpt)[:20] if isinstance(ckpt, dict) else [type(ckpt).__name__]
    raise CheckpointError(f"{path} has no 'model' state dict (keys: {_names(keys)})")


def _read_state_dict(path: Path, trusted: bool) -> tuple[dict[str, Any], Any]:
    """``(state dict without a DDP 'module.' prefix, options stored in the file or None)``."""
    ckpt_opt: Any = None
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from None
    else:
        sd, ckpt_opt = _read_pickled(path, trusted)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: 'model' is not a state dict")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd, ckpt_opt


def load_moment_detr(
    path: str | Path,
    trusted: bool = False,
    opt: Any = None,
    device: str | torch.device = "cpu",
) -> MomentDETR:
    """Load a Moment-DETR checkpoint **strictly** (every key and shape must match).

    Accepted files: an official / lighthouse ``.ckpt`` (``{"model": state_dict, "opt": ...}``), read with
    ``torch.load(weights_only=True)`` unless ``trusted=True`` (then ``weights_only=False``, with a warning:
    unpickling can run code; the official file pickles an ``argparse.Namespace`` and needs it, which a
    one-line :class:`CheckpointError` says, naming ``--trust-checkpoint``); or a ``.safetensors`` state dict.

    Options come from ``opt`` (dict/Namespace), else ``ckpt["opt"]``, else ``opt.json`` beside the file, else
    they are inferred from the tensor shapes. Returns the model in eval mode on ``device`` with ``model.opt``
    set.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Moment-DETR checkpoint not found: {path}")
    sd, ckpt_opt = _read_state_dict(path, trusted)
    sidecar = path.parent / "opt.json"
    if opt is not None:
        options = options_dict(opt)
    elif ckpt_opt is not None:
        options = options_dict(ckpt_opt)
    elif sidecar.is_file():
        options = _read_json(sidecar)
    else:
        options = _opt_from_state_dict(sd)
    model = build_moment_detr(options)
    check_state_dict(model, sd, source=str(path))
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval()


def shared_moment_detr(
    path: str | Path, trusted: bool = False, opt: Any = None, device: str | torch.device = "cpu"
) -> MomentDETR:
    """:func:`load_moment_detr` once per process for the same file (path, size, mtime), ``opt``, device and
    trust setting; later calls return the same model object."""
    opt_key = None if opt is None else json.dumps(options_dict(opt), sort_keys=True, default=str)
    key = ("moment_detr", file_identity(path), opt_key, str(torch.device(device)), bool(trusted))
    return shared_model(key, lambda: load_moment_detr(path, trusted=trusted, opt=opt, device=device))


def save_moment_detr(model: MomentDETR, path: str | Path) -> Path:
    """Save weights as ``.safetensors`` (path suffix) or a weights-only ``.ckpt`` (``{"model", "opt"}`` with a
    plain-dict ``opt``); for safetensors an ``opt.json`` (``v_feat_dim`` before the TEF) is written beside."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opt = dict(model.opt)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
        plain = {k: v for k, v in opt.items() if k not in ("use_tef", "vid_dim")}
        plain["v_feat_dim"] = int(model.vid_dim) - (2 if opt.get("use_tef") else 0)
        (path.parent / "opt.json").write_text(json.dumps(plain, indent=4))
    else:
        torch.save({"model": sd, "opt": opt}, str(path))
    return path
