"""Every recipe value is pinned to the paper's Table 11 or a named official script, and says so in the recipe.

The expected values below are written from the paper's Table 11 and the official run scripts
(run_scripts/sevila/{pre-train/pretrain_qvh.sh, finetune/nexqa_ft.sh, refinement/nexqa_sr.sh} and the
lavis/projects/sevila/train/*.yaml run sections), not read from the recipes; warm-up is converted from
iterations to optimizer steps by dividing by the accumulation, as the NExT-QA script's 1000 iterations at
accumulation 2 = 500 optimizer steps."""

from __future__ import annotations

import pytest

from sevila_tools.eval.datasets import get_dataset
from sevila_tools.training import hyper_parameters, read_recipe, recipe_names, resolve_config

QA = ("nextqa", "star", "how2qa", "tvqa", "vlep")
PROCESSES = 4  # torch.distributed.run --nproc_per_node=4 in every official script
T11, FT, SR, PT = "Table 11", "finetune/nexqa_ft.sh", "refinement/nexqa_sr.sh", "pre-train/pretrain_qvh.sh"
#: Table 11, Answerer fine-tuning: batch per GPU, lr, warm-up iterations, epochs, accumulation
TABLE11_FINETUNE = {
    "nextqa": (8, 3e-5, 1000, 10, 2),
    "star": (8, 3e-5, 1000, 10, 2),
    "how2qa": (4, 3e-5, 3000, 10, 4),
    "tvqa": (4, 3e-5, 8000, 10, 4),
    "vlep": (4, 1e-5, 1200, 10, 4),
}
#: Table 11, Localizer self-refinement: lr, warm-up iterations, epochs (batch 64 at accumulation 1)
TABLE11_REFINE = {ds: (3e-5, 2000 if ds == "tvqa" else 500, 10) for ds in QA}
#: shared by every train/*.yaml run section
YAML_RUN = {"min_lr": (0.0, "yaml"), "warmup_lr": (1e-8, "yaml"), "weight_decay": (0.05, "yaml")}
SHARED = {
    "validate_every_epoch": (True, "runner_base.py"),
    "augment": (True, "blip2_video_train"),
    "frozen_dropout": (True, "runner_base.py"),
    "precision": ("auto", "official fp16"),  # our choice, the official value is in `official`
}


def expected_finetune(ds: str) -> dict[str, tuple]:
    batch, lr, warm_iters, epochs, accum = TABLE11_FINETUNE[ds]
    return {
        "epochs": (epochs, T11), "lr": (lr, T11), "batch_size": (batch, T11),
        "global_batch": (batch * accum * PROCESSES, T11), "reference_processes": (PROCESSES, FT),
        "warmup_steps": (warm_iters // accum, T11), "num_frames": (32, FT), "num_keyframes": (4, FT),
        "val_frames": (32, FT), "val_batch_size": (8, FT), **YAML_RUN, **SHARED,
    }


def expected_refine(ds: str) -> dict[str, tuple]:
    lr, warm, epochs = TABLE11_REFINE[ds]
    return {
        "epochs": (epochs, T11), "lr": (lr, T11), "batch_size": (16, SR), "global_batch": (64, T11),
        "reference_processes": (PROCESSES, SR), "warmup_steps": (warm, T11), "num_frames": (4, SR),
        "num_keyframes": (4, SR), "val_frames": (32, SR), "val_batch_size": (12, SR),
        "init": ("base", "load_qformer_loc"), **YAML_RUN, **SHARED,
    }


def expected_pretrain() -> dict[str, tuple]:
    return {
        "epochs": (80, PT), "lr": (3e-5, PT), "batch_size": (16, PT), "global_batch": (64, T11),
        "reference_processes": (PROCESSES, PT), "warmup_steps": (1000, PT), "num_frames": (4, PT),
        "val_frames": (75, PT), "val_batch_size": (4, PT), "init": ("base", "blip2_fmr"), **YAML_RUN, **SHARED,
    }


EXPECTED = {
    **{f"finetune-{ds}": expected_finetune(ds) for ds in QA},
    **{f"refine-{ds}": expected_refine(ds) for ds in QA},
    "pretrain-qvhighlights": expected_pretrain(),
}


#: the tiny presets' recipes (scripts/train_tiny.sh): toolkit values for a toy model on a CPU, not the paper's
TINY = ("finetune-needleqa", "pretrain-needleqa-spans", "refine-needleqa")


def test_every_recipe_is_pinned():
    assert sorted(recipe_names()) == sorted([*EXPECTED, *TINY])


@pytest.mark.parametrize("name", TINY)
def test_tiny_recipes_name_their_script_and_list_the_official_values(name):
    """A tiny recipe says where it is used and reports every value that differs from the official run."""
    _, raw = read_recipe(name)
    assert raw["source"].startswith("sevila_tools scripts/train_tiny.sh")
    cfg = resolve_config(raw["task"], raw["dataset"], name)
    differ = {d["option"] for d in cfg.deviations()}
    assert {"epochs", "lr", "warmup_steps", "precision"} <= differ
    assert cfg.official["lr"] == 3e-5 and cfg.lr > cfg.official["lr"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_values_and_their_sources(name):
    """Each hyper-parameter in the recipe equals the official value and names where it comes from."""
    _, raw = read_recipe(name)
    sources = raw["sources"]
    values = {k: v for k, v in raw.items() if k in hyper_parameters()}
    want = EXPECTED[name]
    assert set(values) == set(want), f"{name}: values without an expected official value"
    for key, (value, where) in want.items():
        assert values[key] == value, f"{name}.{key}: {values[key]!r}, official {value!r}"
        assert where in sources[key], f"{name}.{key}: source {sources[key]!r} should name {where}"
    task, dataset = name.split("-", 1)
    cfg = resolve_config(task, dataset)
    assert cfg.prompts == get_dataset(dataset).prompt_style  # the dataset's own prompt style
    assert cfg.official == {"precision": "fp16"}  # amp: True
    assert cfg.deviations() == [{"option": "precision", "official": "fp16", "used": "auto"}]
    assert (T11 in raw["source"]) or (PT in raw["source"])


def test_warmup_is_converted_to_optimizer_steps():
    """1000 iterations at accumulation 2 (NExT-QA, STAR) = 500 steps; How2QA 3000/4, TVQA 8000/4, VLEP 1200/4."""
    steps = {ds: resolve_config("finetune", ds).warmup_steps for ds in QA}
    assert steps == {"nextqa": 500, "star": 500, "how2qa": 750, "tvqa": 2000, "vlep": 300}
    for ds in QA:
        c = resolve_config("finetune", ds)
        assert c.global_batch // (c.batch_size * c.reference_processes) == TABLE11_FINETUNE[ds][4]
    assert [resolve_config("refine", ds).warmup_steps for ds in QA] == [500, 500, 500, 2000, 500]
