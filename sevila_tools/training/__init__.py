"""Training SeViLA: registered tasks (pre-train, refine, fine-tune), recipes, the trainer, pseudo-labels and
self-refinement; how each rule relates to the official run is in ``docs/training.md``.

Names are resolved lazily, so importing the package (e.g. for ``sevila --help``) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BEST_NAME": "sevila_tools.training.checkpoints",
    "Batch": "sevila_tools.training.tasks",
    "BatchLayout": "sevila_tools.training.sampling",
    "CHECKPOINT_NAME": "sevila_tools.training.checkpoints",
    "DataReport": "sevila_tools.training.data",
    "FinetuneRunConfig": "sevila_tools.training.runconfig",
    "Item": "sevila_tools.training.data",
    "LABELS_NAME": "sevila_tools.training.labelfile",
    "LABELS_SUMMARY_NAME": "sevila_tools.training.labelfile",
    "LabelSet": "sevila_tools.training.labelfile",
    "LocalAccelerator": "sevila_tools.training.accel",
    "METRICS_NAME": "sevila_tools.training.runs",
    "ORDERS": "sevila_tools.training.self_refine",
    "PretrainRunConfig": "sevila_tools.training.runconfig",
    "PseudoLabelRun": "sevila_tools.training.run",
    "PseudoLabelRunConfig": "sevila_tools.training.runconfig",
    "PseudoLabelSummary": "sevila_tools.training.run",
    "RefineRunConfig": "sevila_tools.training.runconfig",
    "SUMMARY_NAME": "sevila_tools.training.runs",
    "SelfRefineResult": "sevila_tools.training.run",
    "SelfRefineRun": "sevila_tools.training.run",
    "SelfRefineRunConfig": "sevila_tools.training.runconfig",
    "SelfRefinement": "sevila_tools.training.self_refine",
    "Skipped": "sevila_tools.training.data",
    "TASKS": "sevila_tools.training.tasks",
    "TrainConfig": "sevila_tools.training.config",
    "TrainResult": "sevila_tools.training.runs",
    "TrainRun": "sevila_tools.training.run",
    "TrainRunConfig": "sevila_tools.training.runconfig",
    "Trainer": "sevila_tools.training.trainer",
    "TrainingTask": "sevila_tools.training.tasks",
    "atomic_torch_save": "sevila_tools.training.checkpoints",
    "batch_layout": "sevila_tools.training.sampling",
    "branch_state_dict": "sevila_tools.training.checkpoints",
    "decay_split": "sevila_tools.training.optim",
    "device_string": "sevila_tools.training.accel",
    "epoch_order": "sevila_tools.training.sampling",
    "frame_seed": "sevila_tools.training.sampling",
    "get_task": "sevila_tools.training.tasks",
    "hyper_parameters": "sevila_tools.training.config",
    "labels_for_epoch": "sevila_tools.training.labelfile",
    "learning_warning": "sevila_tools.training.sampling",
    "linear_warmup_cosine_lr": "sevila_tools.training.sampling",
    "load_base_localizer": "sevila_tools.training.localizer_init",
    "load_item": "sevila_tools.training.data",
    "load_run_config": "sevila_tools.training.runconfig",
    "make_accelerator": "sevila_tools.training.accel",
    "no_decay": "sevila_tools.training.optim",
    "param_groups": "sevila_tools.training.optim",
    "parse_overrides": "sevila_tools.training.config",
    "pseudo_label": "sevila_tools.training.labels",
    "qvh_frame_labels": "sevila_tools.training.sampling",
    "random_resized_crop": "sevila_tools.training.sampling",
    "read_labels": "sevila_tools.training.labelfile",
    "read_recipe": "sevila_tools.training.config",
    "read_training_checkpoint": "sevila_tools.training.checkpoints",
    "recipe_names": "sevila_tools.training.config",
    "register_task": "sevila_tools.training.tasks",
    "resolve_config": "sevila_tools.training.config",
    "run_pseudo_label": "sevila_tools.training.run",
    "run_self_refine": "sevila_tools.training.run",
    "run_train": "sevila_tools.training.run",
    "self_refine": "sevila_tools.training.self_refine",
    "step_plan": "sevila_tools.training.sampling",
    "summarize_labels": "sevila_tools.training.labelfile",
    "task_names": "sevila_tools.training.tasks",
    "train_stage": "sevila_tools.training.trainer",
    "typed_overrides": "sevila_tools.training.config",
    "usable_samples": "sevila_tools.training.data",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # a submodule of the same name (self_refine) must not shadow the function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
