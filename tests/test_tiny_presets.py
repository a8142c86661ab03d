"""The trained tiny presets ship inside the package and load offline; ``make demo`` answers its clip right."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
import torch
from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.loading import load_runtime, preset_has_random_weights
from sevila_tools.prompts import answerer_prompt, localizer_prompt
from sevila_tools.tiny import TRAINED_PRESETS, preset_folder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def presets():
    return {name: load_runtime(name, device="cpu") for name in TRAINED_PRESETS}


def test_presets_are_package_files_of_a_few_mb():
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "presets/*/*" in package_data["sevila_tools"]
    for name in TRAINED_PRESETS:
        folder = preset_folder(name)
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["model.safetensors", "sevila_config.json", "tokenizer.json", "tokenizer_config.json"]
        assert (folder / "model.safetensors").stat().st_size < 8_000_000


def test_presets_load_offline_as_fp32_with_their_own_tokenizer(presets, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    q, options = "what colour is the star that appears in the top left?", ["red.", "green.", "blue.", "yellow.", "purple."]
    for name, rt in presets.items():
        assert rt.info["model"] == name and rt.info["checkpoint"] is None and not rt.random_weights
        assert not preset_has_random_weights(name)
        assert {p.dtype for p in rt.model.parameters()} == {torch.float32}
        for text in (answerer_prompt(q, options), localizer_prompt(q, options)):
            ids = rt.tokenizer(text).input_ids
            assert rt.tokenizer.unk_token_id not in ids and len(ids) < 77
    assert preset_has_random_weights("tiny-random")


def test_sevila_stages_changed_only_the_q_formers(presets):
    """ViT and T5 are frozen in every SeViLA stage: tiny-trained holds tiny-base's exactly; both branches moved."""
    base, trained = (dict(presets[n].model.named_parameters()) for n in ("tiny-base", "tiny-trained"))
    for key, value in base.items():
        same = torch.equal(value, trained[key])
        assert same == key.startswith(("vision_model.", "language_model.")), key


def test_demo_answers_its_clip_correctly_without_a_notice(tmp_path):
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "RANDOM WEIGHTS" not in r.output and "random weights" not in r.stderr
    assert "-> correct;" in r.stdout and "keyframes: " in r.stdout
    assert (tmp_path / "demo" / "demo_plot.png").stat().st_size > 10_000
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo_r"), "--model", "tiny-random", "--device", "cpu"])
    assert r.exit_code == 0 and r.stdout.count("RANDOM WEIGHTS") == 1, r.output


def test_agent_example_answers_a_needleqa_clip_with_tiny_trained(tmp_path):
    """The example agent (agents/examples/video_agent.py) over tiny-trained tools picks the gold option."""
    import importlib.util
    import json

    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    from sevila_tools.agents.langchain_tools import build_tools
    from sevila_tools.demo import make_clip

    video, plan = make_clip(tmp_path, seed=77)
    question, options = plan.question.text + "?", [o + "." for o in plan.question.options]

    class AskOnce(GenericFakeChatModel):
        def bind_tools(self, tools, **kwargs):  # noqa: ANN001, ANN003, ARG002
            return self

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # noqa: ANN001, ANN003, ARG002
            done = [m for m in messages if isinstance(m, ToolMessage)]
            if not done:
                args = {"video": video.name, "question": question, "options": options}
                msg = AIMessage("", tool_calls=[{"name": "answer_video_question", "args": args, "id": "a"}])
            else:
                ans = json.loads(done[-1].content)
                msg = AIMessage(f"({ans['answer']}) {ans['answer_text']}")
            return ChatResult(generations=[ChatGeneration(message=msg)])

    spec = importlib.util.spec_from_file_location("video_agent_example", REPO / "agents/examples/video_agent.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    tools = build_tools(model="tiny-trained", device="cpu", allow_dirs=[tmp_path], thumbnails=False)
    out = example.run_agent(example.build_agent(AskOnce(messages=iter(())), tools), video.name, question, options)
    gold = plan.question.answer
    assert out["answer"] == f"({'ABCDE'[gold]}) {options[gold]}"
