"""LangChain tools: schemas, a full create_agent loop with a fake chat model, errors, one runtime, concurrency."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from PIL import Image

from sevila_tools.agents.langchain_tools import build_tools
from sevila_tools.agents.toolset import SMALL_FRAME_LIST, SPECS, summarize_localize
from sevila_tools.chain import SevilaChain
from sevila_tools.schemas import (
    AskRequest,
    LocalizeRequest,
    LocalizeResult,
    PseudoLabelRequest,
    VideoAnswerResult,
    VideoQuestionRequest,
)
from sevila_tools.synthetic import make_scene_video, make_video

REPO = Path(__file__).resolve().parents[1]
Q = "what is the square doing?"
OPTS = ["moving left.", "moving right.", "standing still."]
NAMES = ["list_selectors", "localize_keyframes", "answer_video_question", "ask_video", "find_moments",
         "pseudo_label_frames"]


def _example():
    spec = importlib.util.spec_from_file_location("video_agent_example", REPO / "agents/examples/video_agent.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("agent_videos")
    a = make_video(root / "clip.mp4", num_frames=90, fps=30)
    b = make_scene_video(root / "scenes.mp4", scenes=[(20, (255, 0, 0)), (20, (0, 255, 0)), (20, (0, 0, 255))])
    return root, a, b


@pytest.fixture(scope="module")
def tools(tiny_runtime, videos, tmp_path_factory):
    root, _, _ = videos
    ts = build_tools(tiny_runtime, allow_dirs=[root], output_dir=tmp_path_factory.mktemp("thumbs"))
    yield {t.name: t for t in ts}
    ts[0].metadata["service"].close()


@pytest.fixture(scope="module")
def direct(tiny_runtime):
    """Independent computation: a separate chain (own cache) on the same runtime, called from this thread."""
    return SevilaChain(tiny_runtime)


def _call(tool, args, call_id="c1"):
    return tool.invoke({"name": tool.name, "args": args, "id": call_id, "type": "tool_call"})


def test_tools_use_request_models_as_schemas(tools):
    assert list(tools) == NAMES
    assert tools["localize_keyframes"].args_schema is LocalizeRequest
    assert tools["answer_video_question"].args_schema is VideoQuestionRequest
    assert tools["ask_video"].args_schema is AskRequest
    assert tools["pseudo_label_frames"].args_schema is PseudoLabelRequest
    params = convert_to_openai_tool(tools["answer_video_question"])["function"]["parameters"]
    for name in ("video", "question", "options", "num_frames", "num_keyframes", "start", "end", "selector",
                 "timestamps"):
        assert name in params["properties"], name
    assert params["properties"]["options"]["items"]["type"] == "string"
    assert params["properties"]["options"]["minItems"] == 2
    assert params["properties"]["num_frames"]["maximum"] == 256
    assert set(params["required"]) == {"video", "question", "options"}
    for t in tools.values():
        assert t.response_format == "content_and_artifact"
        assert 80 < len(t.description) < 800
    assert len({id(t.metadata["service"]) for t in tools.values()}) == 1


class VideoAgentFake(GenericFakeChatModel):
    """A chat model that plays a sensible agent: localize, then answer (two ways, in one parallel step), then stop.

    Its second step reads the keyframe times out of the localize tool message, like a real model would.
    """

    video: str = ""

    def bind_tools(self, tools, **kwargs):  # noqa: ANN001, ANN003, ARG002
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # noqa: ANN001, ANN003, ARG002
        results = [m for m in messages if isinstance(m, ToolMessage)]
        base = {"video": self.video, "question": Q, "options": OPTS, "num_frames": 8, "num_keyframes": 3}
        if not results:
            msg = AIMessage("", tool_calls=[{"name": "localize_keyframes", "args": base, "id": "loc"}])
        elif len(results) == 1:
            times = [k["time"] for k in json.loads(results[0].content)["keyframes"]]
            msg = AIMessage("", tool_calls=[
                {"name": "answer_video_question", "args": base, "id": "fwd"},
                {"name": "answer_video_question", "args": {**base, "timestamps": times}, "id": "ts"},
            ])
        else:
            ans = json.loads(results[-1].content)
            msg = AIMessage(f"The answer is ({ans['answer']}) {ans['answer_text']}")
        return ChatResult(generations=[ChatGeneration(message=msg)])


def test_agent_loop_localize_then_answer(tools, direct, videos):
    """create_agent + fake model: localize -> answer; tool messages carry what SevilaChain computes directly."""
    root, clip, _ = videos
    example = _example()
    agent = example.build_agent(VideoAgentFake(messages=iter(()), video="clip.mp4"), list(tools.values()))
    out = example.run_agent(agent, "clip.mp4", Q, OPTS)

    real = os.path.realpath(clip)
    loc = direct.localizer(LocalizeRequest(video=real, question=Q, options=OPTS, num_frames=8, num_keyframes=3))
    fwd = direct.forward({"video": real, "question": Q, "options": OPTS, "num_frames": 8, "num_keyframes": 3})

    msgs = {m.tool_call_id: m for m in out["messages"] if isinstance(m, ToolMessage)}
    assert set(msgs) == {"loc", "fwd", "ts"} and all(m.status == "success" for m in msgs.values())
    loc_msg = json.loads(msgs["loc"].content)
    assert [k["time"] for k in loc_msg["keyframes"]] == [round(k.time, 3) for k in loc.keyframes]
    assert [k["frame_index"] for k in loc_msg["keyframes"]] == [k.frame_index for k in loc.keyframes]
    assert [k["score"] for k in loc_msg["keyframes"]] == pytest.approx([k.score for k in loc.keyframes], abs=1e-3)
    assert LocalizeResult.model_validate(msgs["loc"].artifact["result"]).keyframes == loc.keyframes

    # forward chain and "answer at the localized timestamps" read the same frames -> the same answer
    for cid in ("fwd", "ts"):
        content = json.loads(msgs[cid].content)
        full = VideoAnswerResult.model_validate(msgs[cid].artifact["result"])
        assert content["answer"] == fwd.answer.answer_letter and content["answer_text"] == fwd.answer.answer_text
        assert full.answer.answer_index == fwd.answer.answer_index
        assert full.answer.option_probs == pytest.approx(fwd.answer.option_probs, abs=1e-5)
        assert full.answer.frame_indices == fwd.answer.frame_indices
    assert json.loads(msgs["fwd"].content)["keyframes"] == loc_msg["keyframes"]
    assert VideoAnswerResult.model_validate(msgs["ts"].artifact["result"]).localization is None

    letter = fwd.answer.answer_letter
    assert out["answer"] == f"The answer is ({letter}) {fwd.answer.answer_text}"
    # thumbnails: one JPEG per keyframe, native aspect (320x240 clip)
    thumbs = msgs["loc"].artifact["thumbnails"]
    assert len(thumbs) == 3 and len(out["thumbnails"]) == 9
    with Image.open(thumbs[0]) as im:
        assert im.format == "JPEG" and im.size == (320, 240)
    assert len(msgs["fwd"].content) < 1000


def test_ask_and_pseudo_label_match_direct(tools, direct, videos):
    _, clip, _ = videos
    real = os.path.realpath(clip)
    ask_args = {"video": str(clip), "question": "what is it?", "num_frames": 4, "num_keyframes": 2,
                "max_new_tokens": 4}
    msg = _call(tools["ask_video"], ask_args)
    expected = direct.ask({**ask_args, "video": real})
    assert json.loads(msg.content)["answer_text"] == expected.answer_text
    assert [k["time"] for k in json.loads(msg.content)["keyframes"]] == [round(k.time, 3) for k in expected.keyframes]

    pl_args = {"video": str(clip), "question": Q, "options": OPTS, "answer": 1, "num_frames": 4}
    msg = _call(tools["pseudo_label_frames"], pl_args)
    expected = direct.pseudo_labeller({**pl_args, "video": real})
    got = json.loads(msg.content)
    assert [x["label"] for x in got["labels"]] == [lab.label for lab in expected.labels]
    assert got["positive_rate"] == pytest.approx(expected.positive_rate, abs=1e-4)

    sel = json.loads(tools["list_selectors"].invoke({}))
    assert {"localizer", "uniform"} <= {s["name"] for s in sel["selectors"]}


def test_errors_come_back_as_tool_messages(tools, videos, video_file, tmp_path):
    root, clip, _ = videos
    cases = [
        ({"video": "clip.mp4", "question": Q, "options": ["only one"]}, "options"),
        ({"video": "clip.mp4", "question": Q, "options": OPTS, "num_frames": 4, "num_keyframes": 8},
         "num_keyframes (8) exceeds num_frames (4)"),
        ({"video": "clip.mp4", "question": "  ", "options": OPTS}, "question is empty"),
        ({"video": "missing.mp4", "question": Q, "options": OPTS}, "video not found"),
        ({"video": str(video_file), "question": Q, "options": OPTS}, "outside the allowed directories"),
        ({"video": "../../../../etc/hosts", "question": Q, "options": OPTS}, "outside the allowed directories"),
        ({"video": "clip.mp4", "question": Q, "options": OPTS, "num_frames": 4, "num_keyframes": 2,
          "selector": "nope"}, "unknown selector 'nope'"),
    ]
    for i, (args, text) in enumerate(cases):
        msg = _call(tools["answer_video_question"], args, f"e{i}")
        assert isinstance(msg, ToolMessage) and msg.status == "error", args
        assert text in msg.content and "\n" not in msg.content, msg.content
    # a symlink inside the allowed folder that points outside it is refused; one pointing inside is fine
    (root / "escape.mp4").unlink(missing_ok=True)
    (root / "escape.mp4").symlink_to(video_file)
    msg = _call(tools["localize_keyframes"], {"video": "escape.mp4", "question": Q, "num_frames": 2,
                                              "num_keyframes": 1})
    assert msg.status == "error" and "outside the allowed directories" in msg.content
    (root / "inside.mp4").unlink(missing_ok=True)
    (root / "inside.mp4").symlink_to(clip)
    msg = _call(tools["localize_keyframes"], {"video": "inside.mp4", "question": Q, "num_frames": 2,
                                              "num_keyframes": 1})
    assert msg.status == "success" and json.loads(msg.content)["video"] == os.path.realpath(clip)


def test_agent_survives_bad_tool_calls(tools):
    class Fake(GenericFakeChatModel):
        def bind_tools(self, tools, **kwargs):  # noqa: ANN001, ANN003, ARG002
            return self

    from langchain.agents import create_agent

    model = Fake(messages=iter([
        AIMessage("", tool_calls=[
            {"name": "localize_keyframes", "args": {"video": "/etc/hosts", "question": Q}, "id": "a"},
            {"name": "answer_video_question", "args": {"video": "clip.mp4", "question": Q}, "id": "b"},
        ]),
        AIMessage("I could not read that video."),
    ]))
    state = create_agent(model, list(tools.values())).invoke({"messages": [("user", "go")]})
    errors = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert [m.status for m in errors] == ["error", "error"]
    assert "outside the allowed directories" in errors[0].content
    assert "options" in errors[1].content and "required" in errors[1].content.lower()
    assert state["messages"][-1].content == "I could not read that video."


def test_one_runtime_loaded_once(monkeypatch, tiny_runtime, videos):
    root, clip, _ = videos
    import sevila_tools.loading as loading

    calls = []

    def fake_load(*args, **kwargs):
        calls.append((args, kwargs))
        return tiny_runtime

    monkeypatch.setattr(loading, "load_runtime", fake_load)
    ts = {t.name: t for t in build_tools(model="tiny-random", device="cpu", allow_dirs=[root], thumbnails=False)}
    service = ts["localize_keyframes"].metadata["service"]
    assert not calls  # lazy
    args = {"video": "clip.mp4", "question": Q, "num_frames": 2, "num_keyframes": 1}
    with ThreadPoolExecutor(4) as pool:
        msgs = list(pool.map(lambda i: _call(ts["localize_keyframes"], {**args, "question": f"{Q} {i}"}, f"x{i}"),
                             range(4)))
    _call(ts["pseudo_label_frames"], {**args, "options": OPTS, "answer": 0, "num_frames": 2})
    assert all(m.status == "success" for m in msgs)
    assert len(calls) == 1 and calls[0][0][0] == "tiny-random"
    assert service.loads == 1 and service.runtime is tiny_runtime
    assert all(t.metadata["service"] is service for t in ts.values())
    service.close()


def test_concurrent_async_calls_get_their_own_results(tools, direct, videos):
    """8 calls in flight at once (async path), different questions and videos, each gets its own answer."""
    _, clip, scenes = videos
    requests = [
        {"video": str(v), "question": f"{q} #{i}", "options": OPTS, "num_frames": 4, "num_keyframes": 2}
        for i, (v, q) in enumerate([(clip, Q), (scenes, "which colour?")] * 4)
    ]
    names = ["localize_keyframes"] * 6 + ["answer_video_question"] * 2

    async def run_all():
        return await asyncio.gather(*[
            tools[n].ainvoke({"name": n, "args": r, "id": f"k{i}", "type": "tool_call"})
            for i, (n, r) in enumerate(zip(names, requests, strict=True))
        ])

    msgs = asyncio.run(run_all())
    for n, r, m in zip(names, requests, msgs, strict=True):
        assert m.status == "success"
        req = {**r, "video": os.path.realpath(r["video"])}
        if n == "localize_keyframes":
            exp = direct.localizer(req)
            got = LocalizeResult.model_validate(m.artifact["result"])
            assert got.question == r["question"] and got.video == req["video"]
            assert [k.frame_index for k in got.keyframes] == [k.frame_index for k in exp.keyframes]
            assert [f.score for f in got.frames] == pytest.approx([f.score for f in exp.frames], abs=1e-4)
        else:
            exp = direct.forward(req).answer
            got = VideoAnswerResult.model_validate(m.artifact["result"]).answer
            assert got.question == r["question"] and got.answer_index == exp.answer_index
            assert got.option_probs == pytest.approx(exp.option_probs, abs=1e-5)


def test_summary_is_small_for_many_frames(tools, videos):
    _, clip, _ = videos
    msg = _call(tools["localize_keyframes"], {"video": str(clip), "question": Q, "num_frames": 4,
                                              "num_keyframes": 2})
    res = LocalizeResult.model_validate(msg.artifact["result"])
    assert len(json.loads(msg.content)["frames"]) == 4  # few frames: per-frame scores included
    many = res.model_copy(update={"frames": res.frames * 8, "num_frames": 32})
    assert len(many.frames) > SMALL_FRAME_LIST
    summary = summarize_localize(many)
    assert "frames" not in summary and len(summary["keyframes"]) == 2
    assert set(SPECS) == set(NAMES)


def test_example_hint_without_langchain_openai(monkeypatch, capsys):
    example = _example()
    monkeypatch.setitem(sys.modules, "langchain_openai", None)
    with pytest.raises(SystemExit) as exc:
        example.make_chat_model()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "pip install langchain-openai" in err and "\n" not in err


def test_thumbnails_are_removed_when_the_tool_set_closes_or_is_collected(tiny_runtime, tmp_path):
    import gc

    from sevila_tools.agents.service import ToolService

    svc = ToolService(tiny_runtime, allow_dirs=[tmp_path])
    folder = svc.output_dir
    (folder / "x.jpg").write_bytes(b"jpeg")
    svc.close()
    assert not folder.exists()
    svc = ToolService(tiny_runtime, allow_dirs=[tmp_path])
    folder = svc.output_dir
    del svc
    gc.collect()
    assert not folder.exists()
