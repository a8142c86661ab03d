"""Training checkpoints: atomic writes, reading back, RNG states, the resume check, provenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sevila_tools.checkpoint import TOOLKIT_FORMAT
from sevila_tools.errors import CheckpointError, InputError, error_line
from sevila_tools.files import atomic_write
from sevila_tools.modeling import branch_of_key
from sevila_tools.provenance import file_sha256

CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "checkpoint_best.pth"
CHECKPOINT_FORMAT_VERSION = 2


def branch_state_dict(model: nn.Module, branches: Sequence[str]) -> dict[str, torch.Tensor]:
    """CPU copies of the state-dict entries of the given branches (toolkit names)."""
    return {
        k: v.detach().to("cpu", copy=True)
        for k, v in model.state_dict().items()
        if branch_of_key(k) in branches
    }


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, mode 0644, then rename over ``path``."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by the trainer with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - one-line user error
        raise CheckpointError(f"cannot read checkpoint {path}: {error_line(exc)}") from exc
    if not isinstance(obj, dict) or obj.get("format") != TOOLKIT_FORMAT or "hparams" not in obj:
        raise CheckpointError(f"{path} is not a training checkpoint written by sevila_tools")
    return obj


def local_checkpoint_path(spec: str | None) -> Path | None:
    """The file behind a ``--checkpoint`` value (a path, or the cached copy of ``hf://owner/repo/file``)."""
    if not spec or spec in ("auto", "none"):
        return None
    if spec.startswith("hf://"):
        parts = spec[len("hf://") :].split("/")
        if len(parts) < 3:
            return None
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache("/".join(parts[:2]), "/".join(parts[2:]))
        return Path(found) if isinstance(found, str) else None
    path = Path(spec).expanduser()
    return path.resolve() if path.is_file() else None


def provenance(spec: str | None) -> dict[str, Any]:
    """``{"given", "path", "sha256"}`` of a checkpoint (path and hash when the file is on this machine)."""
    path = local_checkpoint_path(spec)
    return {"given": spec, "path": str(path) if path else None, "sha256": file_sha256(path) if path else None}


def rng_state() -> dict[str, Any]:
    """This process's torch RNG states (CPU and CUDA)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed the torch RNG (dropout) for one epoch of one process."""
    torch.manual_seed(
        int(np.random.SeedSequence([int(seed), int(epoch), int(rank), 0x70C4]).generate_state(1)[0])
    )


def check_resume(
    saved: Mapping[str, Any], current: Mapping[str, Any], path: Path, exempt: frozenset[str]
) -> None:
    """Refuse to resume a run with other settings (one line naming the first differences)."""
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}"
        for k in sorted(set(saved) | set(current))
        if k not in exempt and saved.get(k) != current.get(k)
    ]
    if diffs:
        raise InputError(
            f"cannot resume {path}: settings differ ({'; '.join(diffs[:4])}); rerun with the original ones"
        )
