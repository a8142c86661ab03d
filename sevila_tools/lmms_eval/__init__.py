"""lmms-eval plugin, no fork: models ``sevila`` and ``sevila_keyframes`` and a task pack (``docs/frames.md``).

lmms-eval finds the models through the ``lmms_eval.models`` entry point (:func:`manifests`); the task pack is
the folder :func:`task_dir` returns, passed as ``--include_path``. Only the model modules import lmms-eval, so
this package itself imports without it (it lives in its own virtual environment: ``make lmms``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODELS = {
    "sevila": "sevila_tools.lmms_eval.sevila_model.SevilaModel",
    "sevila_keyframes": "sevila_tools.lmms_eval.keyframes_model.SevilaKeyframes",
}


def manifests() -> list[Any]:
    """The ``ModelManifest`` of each model (called by lmms-eval's entry-point loader)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=name, simple_class_path=path) for name, path in MODELS.items()]


def task_dir() -> Path:
    """The task pack: local-file tasks ``sevila_nextqa``, ``sevila_star``, ``sevila_how2qa``, ``sevila_tvqa``,
    ``sevila_vlep`` for ``--include_path``."""
    return Path(__file__).with_name("tasks")


__all__ = ["MODELS", "manifests", "task_dir"]
