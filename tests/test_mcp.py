"""MCP server: schemas, a real stdio session against ``sevila mcp``, path security, concurrency, HTTP transport."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import jsonschema
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from typer.testing import CliRunner

from sevila_tools.agents.mcp_server import create_server
from sevila_tools.agents.service import ToolService
from sevila_tools.agents.toolset import SPECS
from sevila_tools.chain import SevilaChain
from sevila_tools.synthetic import make_scene_video, make_video

SEVILA = Path(sys.executable).parent / "sevila"
Q = "what is the square doing?"
OPTS = ["moving left.", "moving right.", "standing still."]
NAMES = {"list_selectors", "localize_keyframes", "answer_video_question", "ask_video", "find_moments",
         "pseudo_label_frames"}


def _server_env() -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TMPDIR"):  # same numerics as this process
        if k in os.environ:
            env[k] = os.environ[k]
    return env


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("mcp_root")
    make_video(d / "clip.mp4", num_frames=90, fps=30)
    make_scene_video(d / "scenes.mp4", scenes=[(20, (255, 0, 0)), (20, (0, 255, 0)), (20, (0, 0, 255))])
    return d


def _text(result) -> str:
    return result.content[0].text


# ------------------------------------------------------------------------------------------ in-process (fast)
def test_tool_schemas_come_from_the_request_and_result_models(tiny_runtime, root):
    server = create_server(ToolService(tiny_runtime, allow_dirs=[root]), warm_up=False, images=True)

    async def go():
        async with Client(server) as client:
            tools = (await client.list_tools()).tools
            bad = await client.call_tool("answer_video_question",
                                         {"video": "clip.mp4", "question": Q, "options": OPTS, "num_frames": 0})
            few = await client.call_tool("answer_video_question", {"video": "clip.mp4", "question": Q,
                                                                    "options": ["one"]})
            loc = await client.call_tool("localize_keyframes", {"video": "clip.mp4", "question": Q,
                                                                 "num_frames": 3, "num_keyframes": 2})
            return tools, bad, few, loc

    tools, bad, few, loc = anyio.run(go)
    # --images: the compact JSON, then one JPEG per keyframe
    assert [c.type for c in loc.content] == ["text", "image", "image"]
    assert base64.b64decode(loc.content[1].data)[:3] == b"\xff\xd8\xff" and loc.content[1].mime_type == "image/jpeg"
    assert json.loads(_text(loc))["keyframes"][0]["frame_index"] == loc.structured_content["keyframes"][0]["frame_index"]
    assert {t.name for t in tools} == NAMES
    for t in tools:
        spec = SPECS[t.name]
        ref = spec.request_model.model_json_schema()
        assert t.output_schema == spec.result_model.model_json_schema()
        assert sorted(t.input_schema.get("required", [])) == sorted(ref.get("required", []))
        for name, prop in ref.get("properties", {}).items():
            assert t.input_schema["properties"][name].items() >= prop.items(), (t.name, name)
        assert t.description == spec.description and t.annotations.read_only_hint
    for r, text in ((bad, "num_frames must be at least 1 (got 0)"), (few, "options")):
        assert r.is_error and text in _text(r) and "\n" not in _text(r)


def test_cli_rejects_bad_setup_in_one_line(tmp_path):
    from sevila_tools.cli.app import app

    r = CliRunner().invoke(app, ["mcp", "--model", "tiny-random", "--allow-dir", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "allowed directory does not exist" in r.output
    assert r.output.strip().count("\n") == 0


# ------------------------------------------------------------------------------------------ real stdio session
def _requests(root: Path) -> list[tuple[str, dict]]:
    clip, scenes = str(root / "clip.mp4"), "scenes.mp4"  # absolute and relative (to the allowed root)
    base = {"num_frames": 4, "num_keyframes": 2}
    reqs = []
    for i in range(4):
        video = clip if i % 2 == 0 else scenes
        reqs.append(("answer_video_question", {"video": video, "question": f"{Q} ({i})", "options": OPTS, **base}))
    reqs += [
        ("localize_keyframes", {"video": clip, "question": "where is the square?", **base}),
        ("localize_keyframes", {"video": scenes, "question": "when is it blue?", **base}),
        ("ask_video", {"video": clip, "question": "what moves?", "max_new_tokens": 4, **base}),
        ("ask_video", {"video": scenes, "question": "which colour?", "max_new_tokens": 4, **base}),
    ]
    return reqs


def _direct(chain: SevilaChain, root: Path, name: str, args: dict) -> dict:
    """The result computed in this process with SevilaChain, as JSON (what structuredContent must hold)."""
    args = {**args, "video": os.path.realpath(root / args["video"])}
    if name == "answer_video_question":
        fwd = chain.forward(args)
        return {"localization": fwd.localization.model_dump(mode="json"), "answer": fwd.answer.model_dump(mode="json")}
    if name == "localize_keyframes":
        return chain.localizer(args).model_dump(mode="json")
    if name == "ask_video":
        return chain.ask(args).model_dump(mode="json")
    if name == "pseudo_label_frames":
        return chain.pseudo_labeller(args).model_dump(mode="json")
    raise AssertionError(name)


def _assert_same(name: str, got: dict, exp: dict) -> None:
    if name == "answer_video_question":
        assert got["answer"]["question"] == exp["answer"]["question"]
        assert got["answer"]["answer_index"] == exp["answer"]["answer_index"]
        assert got["answer"]["option_probs"] == pytest.approx(exp["answer"]["option_probs"], abs=1e-5)
        assert got["answer"]["frame_indices"] == exp["answer"]["frame_indices"]
        got, exp = got["localization"], exp["localization"]
    assert got["video"] == exp["video"] and got["question"] == exp["question"]
    if "keyframes" in exp:
        assert [k["frame_index"] for k in got["keyframes"]] == [k["frame_index"] for k in exp["keyframes"]]
    if "frames" in exp:
        assert [f["score"] for f in got["frames"]] == pytest.approx([f["score"] for f in exp["frames"]], abs=1e-4)
    if "answer_text" in exp:
        assert got["answer_text"] == exp["answer_text"]
    if "labels" in exp:
        assert [x["label"] for x in got["labels"]] == [x["label"] for x in exp["labels"]]


@pytest.fixture(scope="module")
def stdio_session(root, tiny_runtime, video_file, tmp_path_factory):
    """Run one MCP client session against ``sevila mcp`` over stdio; return what it saw (tests assert on it)."""
    if not SEVILA.exists():
        pytest.skip(f"entry point not installed: {SEVILA}")
    (root / "escape.mp4").symlink_to(video_file)  # inside the root, pointing outside it
    # expected results, computed first (sequentially, in this process)
    chain = SevilaChain(tiny_runtime)
    single = [
        ("localize_keyframes", {"video": "clip.mp4", "question": Q, "options": OPTS, "num_frames": 8,
                                "num_keyframes": 3}),
        ("answer_video_question", {"video": "clip.mp4", "question": Q, "options": OPTS, "num_frames": 8,
                                   "num_keyframes": 3}),
        ("pseudo_label_frames", {"video": "clip.mp4", "question": Q, "options": OPTS, "answer": 2, "num_frames": 4}),
    ]
    concurrent = _requests(root)
    expected_single = [_direct(chain, root, n, a) for n, a in single]
    expected_concurrent = [_direct(chain, root, n, a) for n, a in concurrent]

    errlog_path = tmp_path_factory.mktemp("mcp_log") / "stderr.txt"
    stream_errors: list[Exception] = []

    async def on_message(message) -> None:  # noqa: ANN001
        if isinstance(message, Exception):  # a stdout line that is not a JSON-RPC message
            stream_errors.append(message)

    params = StdioServerParameters(
        command=str(SEVILA), args=["mcp", "--model", "tiny-random", "--device", "cpu", "--allow-dir", str(root)],
        env=_server_env(), cwd=str(tmp_path_factory.mktemp("mcp_cwd")),
    )
    out: dict = {}

    async def scenario():
        with errlog_path.open("w") as errlog, anyio.fail_after(240):
            async with Client(stdio_client(params, errlog=errlog), message_handler=on_message) as client:
                out["tools"] = (await client.list_tools()).tools
                out["selectors"] = await client.call_tool("list_selectors", {})
                out["single"] = [await client.call_tool(n, a) for n, a in single]
                out["refused"] = [
                    await client.call_tool("localize_keyframes", {"video": v, "question": Q})
                    for v in (str(video_file), "escape.mp4", "../../../../../etc/hosts")
                ]
                results: list = [None] * len(concurrent)

                async def one(i: int) -> None:
                    results[i] = await client.call_tool(*concurrent[i])

                async with anyio.create_task_group() as tg:
                    for i in range(len(concurrent)):
                        tg.start_soon(one, i)
                out["concurrent"] = results

    anyio.run(scenario)
    out.update(expected_single=expected_single, expected_concurrent=expected_concurrent, single_requests=single,
               concurrent_requests=concurrent, stream_errors=stream_errors, stderr=errlog_path.read_text())
    return out


@pytest.mark.slow
def test_stdio_lists_tools_with_schemas(stdio_session):
    tools = {t.name: t for t in stdio_session["tools"]}
    assert set(tools) == NAMES
    for name, t in tools.items():
        assert t.output_schema == SPECS[name].result_model.model_json_schema()
        assert t.input_schema["type"] == "object"
    props = tools["answer_video_question"].input_schema["properties"]
    assert {"video", "question", "options", "num_frames", "num_keyframes", "start", "end", "selector",
            "timestamps"} <= set(props)


@pytest.mark.slow
def test_stdio_calls_return_valid_structured_results(stdio_session):
    tools = {t.name: t for t in stdio_session["tools"]}
    sel = stdio_session["selectors"]
    assert not sel.is_error and "localizer" in {s["name"] for s in sel.structured_content["selectors"]}
    for (name, _), res, exp in zip(stdio_session["single_requests"], stdio_session["single"],
                                   stdio_session["expected_single"], strict=True):
        assert not res.is_error, _text(res)
        jsonschema.validate(res.structured_content, tools[name].output_schema)
        SPECS[name].result_model.model_validate(res.structured_content)
        _assert_same(name, res.structured_content, exp)
        assert len(_text(res)) < len(str(res.structured_content))  # the model reads the compact summary
    loc = stdio_session["single"][0].structured_content
    assert len(loc["frames"]) == 8 and sum(f["keyframe"] for f in loc["frames"]) == 3


@pytest.mark.slow
def test_stdio_refuses_paths_outside_the_allowed_root(stdio_session):
    for res in stdio_session["refused"]:
        assert res.is_error and "outside the allowed directories" in _text(res), _text(res)


@pytest.mark.slow
def test_stdio_concurrent_calls_get_their_own_results(stdio_session):
    tools = {t.name: t for t in stdio_session["tools"]}
    for (name, _args), res, exp in zip(stdio_session["concurrent_requests"], stdio_session["concurrent"],
                                      stdio_session["expected_concurrent"], strict=True):
        assert not res.is_error, _text(res)
        jsonschema.validate(res.structured_content, tools[name].output_schema)
        _assert_same(name, res.structured_content, exp)


@pytest.mark.slow
def test_stdio_stdout_carries_only_protocol(stdio_session):
    assert stdio_session["stream_errors"] == []
    err = stdio_session["stderr"].lower()
    assert "random weights" in err  # the note went to stderr


# ------------------------------------------------------------------------------------------ streamable HTTP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_streamable_http_transport(root, tiny_runtime, tmp_path):
    if not SEVILA.exists():
        pytest.skip(f"entry point not installed: {SEVILA}")
    port = _free_port()
    log = (tmp_path / "http.log").open("w")
    proc = subprocess.Popen(
        [str(SEVILA), "mcp", "--model", "tiny-random", "--device", "cpu", "--allow-dir", str(root),
         "--http", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **_server_env()},
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "http.log").read_text()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        args = {"video": "clip.mp4", "question": Q, "num_frames": 4, "num_keyframes": 2}

        async def go():
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                names = {t.name for t in (await client.list_tools()).tools}
                return names, await client.call_tool("localize_keyframes", args)

        names, res = anyio.run(go)
        assert names == NAMES and not res.is_error
        exp = _direct(SevilaChain(tiny_runtime), root, "localize_keyframes", args)
        _assert_same("localize_keyframes", res.structured_content, exp)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
