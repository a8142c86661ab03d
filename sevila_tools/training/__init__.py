"""Training SeViLA: registered tasks (pre-train, refine, fine-tune), recipes, the trainer, pseudo-labels and
self-refinement; how each rule relates to the official run is in ``docs/training.md``."""

from sevila_tools.training.accel import LocalAccelerator, device_string, make_accelerator
from sevila_tools.training.checkpoints import (
    BEST_NAME,
    CHECKPOINT_NAME,
    atomic_torch_save,
    branch_state_dict,
    read_training_checkpoint,
)
from sevila_tools.training.config import (
    TrainConfig,
    hyper_parameters,
    parse_overrides,
    read_recipe,
    recipe_names,
    resolve_config,
)
from sevila_tools.training.data import DataReport, Item, Skipped, load_item, usable_samples
from sevila_tools.training.labelfile import (
    LABELS_NAME,
    LABELS_SUMMARY_NAME,
    LabelSet,
    labels_for_epoch,
    read_labels,
    summarize_labels,
)
from sevila_tools.training.labels import pseudo_label
from sevila_tools.training.optim import decay_split, no_decay, param_groups
from sevila_tools.training.runs import METRICS_NAME, SUMMARY_NAME, TrainResult
from sevila_tools.training.sampling import (
    BatchLayout,
    batch_layout,
    epoch_order,
    frame_seed,
    linear_warmup_cosine_lr,
    qvh_frame_labels,
    random_resized_crop,
    step_plan,
)
from sevila_tools.training.self_refine import SelfRefinement, self_refine
from sevila_tools.training.tasks import TASKS, Batch, TrainingTask, get_task, register_task, task_names
from sevila_tools.training.trainer import Trainer, train_stage

__all__ = [
    "BEST_NAME",
    "CHECKPOINT_NAME",
    "LABELS_NAME",
    "LABELS_SUMMARY_NAME",
    "METRICS_NAME",
    "SUMMARY_NAME",
    "TASKS",
    "Batch",
    "BatchLayout",
    "DataReport",
    "Item",
    "LabelSet",
    "LocalAccelerator",
    "SelfRefinement",
    "Skipped",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingTask",
    "atomic_torch_save",
    "batch_layout",
    "branch_state_dict",
    "decay_split",
    "device_string",
    "epoch_order",
    "frame_seed",
    "get_task",
    "hyper_parameters",
    "labels_for_epoch",
    "linear_warmup_cosine_lr",
    "load_item",
    "make_accelerator",
    "no_decay",
    "param_groups",
    "parse_overrides",
    "pseudo_label",
    "qvh_frame_labels",
    "random_resized_crop",
    "read_labels",
    "read_recipe",
    "read_training_checkpoint",
    "recipe_names",
    "register_task",
    "resolve_config",
    "self_refine",
    "step_plan",
    "summarize_labels",
    "task_names",
    "train_stage",
    "usable_samples",
]
