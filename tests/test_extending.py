"""The worked examples of docs/extending.md, run as written.

Each example file is read from the page, loaded as a module (which registers the plugin), used through the public
APIs on the tiny model, and unregistered in its fixture's teardown (registries are process-wide). The test code
shown on the page must be the code of this module.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sevila_tools.answering import ANSWER_STRATEGIES
from sevila_tools.chain import SevilaChain
from sevila_tools.cli.app import app
from sevila_tools.encoding import FrameSpec
from sevila_tools.eval.datasets import get_dataset, load_annotations
from sevila_tools.eval.datasets._spec import _REGISTRY as DATASETS
from sevila_tools.eval.runner import run_eval
from sevila_tools.loading import load_runtime
from sevila_tools.modeling import branch_of_key
from sevila_tools.pipeline import Pipeline, Query
from sevila_tools.prompts import LOC_INSTRUCTION, PROMPT_STYLES, prompts_for
from sevila_tools.selectors import REGISTRY
from sevila_tools.training import TASKS, get_task, resolve_config, task_names, train_stage

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
FILE_BLOCK = re.compile(r"^File `(?P<path>[^`]+)`:\n\n```(?:python|yaml)\n(?P<code>.*?)^```", re.M | re.S)
PYTHON_BLOCK = re.compile(r"^```python\n(?P<code>.*?)^```", re.M | re.S)


def example(path: str) -> str:
    """The text of the example file ``path`` as the page shows it."""
    found = {m["path"]: m["code"] for m in FILE_BLOCK.finditer(DOC.read_text())}
    return found[path]


def load_example(tmp_path: Path, path: str):
    """Write the example ``path`` into ``tmp_path`` and import it (its plugin registers itself)."""
    name = "extending_example_" + Path(path).stem
    file = tmp_path / f"{name}.py"
    file.write_text(example(path))
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def middle(tmp_path):
    yield load_example(tmp_path, "sevila_tools/selectors/middle.py")
    REGISTRY.pop("middle")


@pytest.fixture
def toyqa(tmp_path):
    yield load_example(tmp_path, "eval/datasets/toyqa.py")
    DATASETS.pop("toyqa")


@pytest.fixture
def first_frame(tmp_path):
    yield load_example(tmp_path, "my_sevila/first_frame.py")
    ANSWER_STRATEGIES.pop("first_frame")


@pytest.fixture
def finetune_uniform_recipe(tmp_path):
    """Registers the task and yields its recipe file."""
    load_example(tmp_path, "sevila_tools/training/tasks/finetune_uniform.py")
    recipe = tmp_path / "finetune_uniform-nextqa.yaml"
    recipe.write_text(example("recipes/finetune_uniform-nextqa.yaml"))
    yield recipe
    TASKS.pop("finetune_uniform")


@pytest.fixture
def no_options(tmp_path):
    yield load_example(tmp_path, "my_sevila/no_options.py")
    PROMPT_STYLES.pop("no_options")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread (and the machine is shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------------ the page
def test_the_page_shows_this_modules_code():
    """Every test block of the page is code of this module, and every example file is loaded by a fixture."""
    text = DOC.read_text()
    source = Path(__file__).read_text()
    files = {m["path"] for m in FILE_BLOCK.finditer(text)}
    shown = [m["code"] for m in PYTHON_BLOCK.finditer(text) if m["code"] not in {example(p) for p in files}]
    assert len(shown) == 6 and all(code in source for code in shown)
    assert all(f'"{p}"' in source for p in files) and len(files) == 6


# ------------------------------------------------------------------------------------------------ examples
def test_middle_selector(middle, tiny_runtime, video_file):
    request = {"video": str(video_file), "question": "what is the square doing?",
               "options": ["moving left.", "moving right."], "num_frames": 8, "num_keyframes": 2,
               "selector": "middle"}
    result = SevilaChain(tiny_runtime).forward(request)
    assert [k.position for k in result.localization.keyframes] == [3, 4]
    assert result.answer.frame_indices == [k.frame_index for k in result.localization.keyframes]
    early = SevilaChain(tiny_runtime, selector_options={"middle_at": 0.0}).localizer(request)
    assert [k.position for k in early.keyframes] == [0, 1]
    listed = json.loads(cli("selectors", "--json").stdout)
    assert listed["middle"]["options"]["middle_at"]["default"] == 0.5
    late = cli("localize", video_file, "what?", "-n", 8, "-k", 2, "--selector", "middle",
               "--selector-option", "middle_at=1", "--json", "--model", "tiny-random", "--device", "cpu")
    assert [k["position"] for k in json.loads(late.stdout)["keyframes"]] == [6, 7]


def test_toyqa_dataset(toyqa, tiny_runtime, video_file, tmp_path):
    (tmp_path / "videos").mkdir()
    shutil.copy(video_file, tmp_path / "videos" / "c1.mp4")
    rows = [{"id": 1, "clip": "c1", "q": "what moves?", "options": ["a square.", "a dog.", "a car."], "gold": 0},
            {"id": 2, "clip": "c1", "q": "which way?", "options": ["left.", "right.", "up."], "gold": 1}]
    ann = tmp_path / "toyqa.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = get_dataset("toyqa").load(ann, tmp_path / "videos")
    assert [s.qid for s in samples] == ["TOYQA_1", "TOYQA_2"] and samples[1].answer == 1
    assert samples[0].video == str(tmp_path / "videos" / "c1.mp4")
    assert get_dataset("toyqa").score({"TOYQA_1": 0, "TOYQA_2": 2}, samples)["overall"] == 50.0
    summary = run_eval({"dataset": "toyqa", "annotations": ann, "videos": tmp_path / "videos",
                        "out": tmp_path / "run", "frames": 8, "keyframes": 2, "cache": False},
                       runtime=tiny_runtime, progress=False)
    assert summary.predictions == 2 and summary.metrics["n"] == 2
    scored = cli("score", "-d", "toyqa", "-p", tmp_path / "run" / "predictions.jsonl", "-a", ann, "--json")
    assert json.loads(scored.stdout)["overall"] == summary.metrics["overall"]


def test_first_frame_answerer(first_frame, tiny_runtime, video_file):
    pipeline = Pipeline(tiny_runtime, answerer="first_frame")
    encoded = pipeline.encoder.encode(FrameSpec(str(video_file), 8))
    query = Query("what is the square doing?", ["moving left.", "moving right."])
    out = pipeline.forward([(encoded, query)], 2)[0]
    assert out.answer.strategy == "first_frame" and out.answer.frame_indices == out.selection.frame_indices
    first = pipeline.encoder.features_at(encoded, out.selection.frame_indices[:1])
    alone = tiny_runtime.frame_answers(first[None], [pipeline.texts(query)[1]], 2, "faithful")
    assert out.answer.index == alone.predictions[0]
    assert out.answer.probs == pytest.approx(alone.probs[0].tolist())
    request = {"video": str(video_file), "question": query.question, "options": query.options,
               "num_frames": 8, "num_keyframes": 2, "answerer": "first_frame"}
    assert SevilaChain(tiny_runtime).forward(request).answer.answerer == "first_frame"


def test_finetune_uniform_task(finetune_uniform_recipe, video_file, tmp_path):
    assert "finetune_uniform" in task_names() and get_task("finetune_uniform").branch == "answerer"
    (tmp_path / "videos").mkdir()
    shutil.copy(video_file, tmp_path / "videos" / "c1.mp4")
    rows = [{"video": "c1", "qid": f"CW_c1_{i}", "question": "what is the square doing?",
             "a0": "moving left.", "a1": "moving right.", "answer": i % 2} for i in range(2)]
    (tmp_path / "train.json").write_text(json.dumps(rows))
    samples = load_annotations("nextqa", tmp_path / "train.json", videos_root=tmp_path / "videos")
    config = resolve_config("finetune_uniform", "nextqa", finetune_uniform_recipe,
                            {"epochs": 1, "batch_size": 2, "global_batch": 2, "reference_processes": 1,
                             "augment": False})
    runtime = load_runtime("tiny-random", device="cpu")  # training changes the weights: not the shared one
    before = {k: v.clone() for k, v in runtime.model.state_dict().items()}
    result = train_stage(runtime, samples, config, tmp_path / "run", val_samples=samples, progress=False)
    assert result.complete and result.steps == 1 and result.validation[0]["questions"] == 2
    changed = {branch_of_key(k) for k, v in runtime.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"answerer"}


def test_no_options_prompt_style(no_options, tiny_runtime, video_file):
    question, options = "why did the square move?", ["it slipped.", "it was pushed."]
    localizer, answerer = prompts_for("no_options", question, options)
    assert localizer == f"Question: {question} {LOC_INSTRUCTION}"
    assert answerer == prompts_for("default", question, options)[1]
    request = {"video": str(video_file), "question": question, "options": options,
               "num_frames": 8, "num_keyframes": 2}
    result = SevilaChain(tiny_runtime, prompts="no_options").forward(request)
    assert result.localization.prompt == localizer and result.answer.prompt == answerer
