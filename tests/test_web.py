"""``sevila web`` without a browser: callbacks on the tiny model, upload checks, the Gradio app, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sevila_tools.errors import InputError, VideoError
from sevila_tools.schemas import RANDOM_WEIGHTS_NOTICE, AskResult, ForwardResult
from sevila_tools.web import WebDemo, parse_options, web_selectors

QUESTION = "what is the square doing?"
OPTIONS = ["moving left.", "moving right.", "standing still."]


def _chain(runtime):
    from sevila_tools.chain import SevilaChain
    from sevila_tools.encoding import MemoryStore

    return SevilaChain(runtime, store=MemoryStore(16))


@pytest.fixture()
def demo(tiny_runtime, tmp_path):
    d = WebDemo(_chain(tiny_runtime), work_dir=tmp_path / "web")
    yield d
    d.close()


@pytest.fixture()
def upload(video_file, tmp_path):
    """A copy of the synthetic clip, as Gradio stores an upload (uploads are deleted when sessions end)."""
    path = tmp_path / "gradio" / "clip.mp4"
    path.parent.mkdir()
    path.write_bytes(Path(video_file).read_bytes())
    return path


def _fields(demo: WebDemo, video, options=OPTIONS, **kw):
    return demo.fields(str(video), None, QUESTION, "\n".join(options), 32, 4, None, None, **kw)


def test_answer_tab_streams_keyframes_then_answer(demo, upload):
    stages = list(demo.run(_fields(demo, upload), "localizer"))
    assert len(stages) == 2
    first, last = stages
    assert first.answer is None and first.json_path is None  # the answer comes in the second update
    assert len(first.gallery) == 4 and Path(first.timeline).read_bytes()[:4] == b"\x89PNG"
    assert all("s · frame" in cap and img.ndim == 3 for img, cap in first.gallery)
    assert isinstance(last.result, ForwardResult)
    ans = last.result.answer
    assert last.answer == f"({ans.answer_letter}) {ans.answer_text}" and ans.answer_text in OPTIONS
    assert list(last.probs) == ["(A) moving left.", "(B) moving right.", "(C) standing still."]
    assert sum(last.probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert len(last.gallery) == 4
    assert [c for _, c in last.gallery] == [c for _, c in first.gallery]
    assert last.result.localization.notice == RANDOM_WEIGHTS_NOTICE
    assert RANDOM_WEIGHTS_NOTICE in demo.provenance() and "tiny-random" in demo.provenance()


def test_download_json_is_the_chain_result(demo, upload, tiny_runtime):
    fields = _fields(demo, upload)
    last = list(demo.run(fields, "localizer"))[-1]
    got = json.loads(Path(last.json_path).read_text())
    expected = _chain(tiny_runtime).forward({**fields, "selector": "localizer"})
    assert got == json.loads(expected.model_dump_json())
    assert ForwardResult.model_validate(got) == expected


def test_no_options_gives_an_open_answer(demo, upload):
    last = list(demo.run(_fields(demo, upload, options=[]), "localizer"))[-1]
    assert isinstance(last.result, AskResult)
    assert last.answer == last.result.answer_text and last.probs == {}
    assert len(last.gallery) == 4 and last.result.notice == RANDOM_WEIGHTS_NOTICE
    assert json.loads(Path(last.json_path).read_text())["answer_text"] == last.answer


def test_compare_encodes_the_video_once_per_candidate_count(demo, upload):
    encoder = demo.chain.pipeline.encoder
    names = [c.name for c in web_selectors()]
    counts = {demo.chain.pipeline.selector(n).num_candidates(32, 4) for n in names}
    updates = list(demo.compare(_fields(demo, upload), names))
    assert len(updates) == len(names)
    runs = updates[-1].runs
    assert list(runs) == names
    for run in runs.values():
        assert run.error is None, run.error
        assert len(run.gallery) == 4 and run.answer.split(" · ")[0][4:] in OPTIONS
        assert isinstance(run.result, ForwardResult)
    assert encoder.decoded == len(counts)  # one decode + ViT pass per distinct candidate count
    before = encoder.decoded
    list(demo.compare(_fields(demo, upload), names[:2]))
    assert encoder.decoded == before  # a second comparison reuses the encodings


def test_compare_one_candidate_count_runs_the_vit_once(demo, upload):
    encoder, store = demo.chain.pipeline.encoder, demo.chain.store
    same = [
        c.name for c in web_selectors() if demo.chain.pipeline.selector(c.name).num_candidates(32, 4) == 32
    ]
    assert len(same) >= 2
    list(demo.compare(_fields(demo, upload), same))
    assert encoder.decoded == 1 and store.stats()["writes"] == 1


def test_web_selectors_exclude_gold_readers(demo, upload):
    from sevila_tools.selectors import REGISTRY

    gold = [n for n, c in REGISTRY.items() if c.needs_gold]
    assert gold and not set(gold) & {c.name for c in web_selectors()}
    with pytest.raises(InputError, match="cannot be compared"):
        list(demo.compare(_fields(demo, upload), gold))
    with pytest.raises(InputError, match="at least one selector"):
        list(demo.compare(_fields(demo, upload), []))


def test_text_renamed_mp4_is_a_readable_error(demo, tmp_path):
    fake = tmp_path / "upload" / "notes.mp4"
    fake.parent.mkdir()
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError) as info:
        _fields(demo, fake)
    msg = str(info.value)
    assert msg.startswith("not a readable video: notes.mp4") and "\n" not in msg
    assert str(fake.parent) not in msg  # server paths stay on the server


def test_oversize_and_non_video_uploads(tiny_runtime, tmp_path, upload):
    d = WebDemo(_chain(tiny_runtime), max_upload_mb=1, work_dir=tmp_path / "w")
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (3 << 20))
    with pytest.raises(InputError, match=r"big.mp4 is 3.0 MB; uploads are limited to 1 MB"):
        _fields(d, big)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="notes.txt is not a video file"):
        _fields(d, text)
    with pytest.raises(InputError, match="no video"):
        d.fields(None, "", QUESTION, "", 32, 4, None, None)
    assert _fields(d, upload)["video"] == str(upload)  # 1 MB is enough for the clip


def test_server_paths_stay_under_allowed_folders(tiny_runtime, tmp_path, video_file, upload):
    allowed = tmp_path / "videos"
    allowed.mkdir()
    (allowed / "clip.mp4").write_bytes(Path(video_file).read_bytes())
    (allowed / "escape.mp4").symlink_to(video_file)
    d = WebDemo(_chain(tiny_runtime), allow_dirs=[allowed], work_dir=tmp_path / "w")
    ok = d.fields(None, "clip.mp4", QUESTION, "", 8, 2, None, None)
    assert ok["video"] == str((allowed / "clip.mp4").resolve())
    with pytest.raises(InputError, match="outside the allowed folders"):
        d.fields(None, "escape.mp4", QUESTION, "", 8, 2, None, None)
    with pytest.raises(InputError, match="outside the allowed folders"):
        d.fields(None, str(video_file), QUESTION, "", 8, 2, None, None)
    with pytest.raises(InputError, match="not both"):
        d.fields(str(upload), "clip.mp4", QUESTION, "", 8, 2, None, None)
    uploads_only = WebDemo(_chain(tiny_runtime), work_dir=tmp_path / "w2")
    with pytest.raises(InputError, match="--allow-dir"):
        uploads_only.fields(None, "clip.mp4", QUESTION, "", 8, 2, None, None)


def test_option_and_request_errors(demo, upload):
    assert parse_options("a\n\n b \n") == ["a", "b"] and parse_options("") == []
    with pytest.raises(InputError, match="at least 2 options"):
        parse_options("only one")
    with pytest.raises(InputError, match="at most 5 options"):
        parse_options("\n".join("abcdef"))
    from pydantic import ValidationError

    fields = demo.fields(str(upload), None, "  ", "", 8, 2, None, None)
    with pytest.raises(ValidationError, match="question is empty"):
        list(demo.run(fields, "localizer"))
    fields = demo.fields(str(upload), None, QUESTION, "", 4, 8, None, None)
    with pytest.raises(ValidationError, match="exceeds num_frames"):
        list(demo.run(fields, "localizer"))


def test_session_files_are_deleted(demo, video_file, tmp_path):
    upload = tmp_path / "gradio-upload" / "clip.mp4"
    upload.parent.mkdir()
    upload.write_bytes(Path(video_file).read_bytes())
    fields = _fields(demo, upload, session="abc")
    last = list(demo.run(fields, "localizer", session="abc"))[-1]
    assert Path(last.json_path).parent == demo.work_dir / "abc" and upload.exists()
    demo.end_session("abc")
    assert not (demo.work_dir / "abc").exists() and not upload.exists()
    assert Path(video_file).exists()  # only uploads are deleted
    demo.close()
    assert not demo.work_dir.exists()


def test_page_errors_are_one_escaped_line():
    from sevila_tools.web.app import page_error

    err = page_error(VideoError("not a readable video: <b>my_clip*.mp4</b> (invalid data)"))
    assert err == r"error: not a readable video: &lt;b&gt;my\_clip\*.mp4&lt;/b&gt; (invalid data)"
    other = page_error(RuntimeError("boom\nsecond line"))
    assert other == "error: internal error (details in the server log): RuntimeError: boom second line"


def _endpoint(demo, name: str):
    from sevila_tools.web.app import build_app

    return next(f.fn for f in build_app(demo).fns.values() if f.api_name == name)


def test_an_input_error_is_the_status_line_and_clears_the_answer_tab(demo, tmp_path):
    """No error badge on every panel: the status says what went wrong, the other five outputs are emptied."""
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video\n" * 20)
    answer = _endpoint(demo, "answer")
    updates = list(answer(str(fake), None, QUESTION, "\n".join(OPTIONS), 8, 2, "localizer", None, None, None))
    assert updates[0] == ("encoding the video ...", None, [], "", None, None) and len(updates) == 2
    status, *rest = updates[1]
    assert status.startswith("error: not a readable video: fake.mp4 (") and "\n" not in status
    assert rest == [None, [], "", None, None]
    status, *rest = list(answer(str(fake), None, "", "a.\nb.", 8, 2, "localizer", None, None, None))[-1]
    assert status.startswith("error: ") and rest == [None, [], "", None, None]


def test_an_input_error_hides_every_comparison_row(demo, upload):
    compare = _endpoint(demo, "compare")
    last = list(compare(str(upload), None, QUESTION, "only one.", 8, 2, None, None, ["uniform", "localizer"], None))[-1]
    n = len(web_selectors())
    assert last[0] == "error: give at least 2 options, or none for an open answer"
    assert all(u["visible"] is False for u in last[1 : 1 + n])


def test_app_has_named_endpoints_on_one_model_queue(demo):
    from sevila_tools.web.app import MODEL_QUEUE, build_app

    app = build_app(demo)
    fns = {f.api_name: f for f in app.fns.values() if isinstance(f.api_name, str)}
    assert {"answer", "compare"} <= set(fns)
    for name in ("answer", "compare"):
        assert fns[name].concurrency_limit == 1 and fns[name].concurrency_id == MODEL_QUEUE
        assert fns[name].types_generator  # partial updates as each stage ends
    assert app._queue.default_concurrency_limit == 1


def test_cli_without_gradio_prints_one_line(monkeypatch):
    from typer.testing import CliRunner

    from sevila_tools.cli.app import app

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    result = CliRunner().invoke(app, ["web", "--model", "tiny-random"])
    assert result.exit_code != 0
    assert result.stderr.strip() == (
        'error: sevila web needs gradio: pip install "sevila-tools[web]" (in a clone: .venv/bin/pip install -e ".[web]")'
    )


def test_cli_help_lists_the_options():
    from typer.testing import CliRunner

    from sevila_tools.cli.app import app

    result = CliRunner().invoke(app, ["web", "--help"])
    assert result.exit_code == 0
    for opt in (
        "--model",
        "--checkpoint",
        "--trust-checkpoint",
        "--device",
        "--host",
        "--port",
        "--allow-dir",
        "--max-upload-mb",
        "--share",
    ):
        assert opt in result.output
