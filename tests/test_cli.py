"""`sevila localize / answer / convert / info / selectors` through typer's runner and the installed script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.schemas import ForwardResult, LocalizeResult

runner = CliRunner()
TINY = ["--model", "tiny-random", "--device", "cpu"]
SEVILA = Path(sys.executable).parent / "sevila"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _forward(video) -> list:
    """``sevila localize`` with a question and two options: the forward chain."""
    return ["localize", video, "what is the square doing?", "-o", "left.", "-o", "right."]


def test_localize_json_validates(video_file):
    r = run(
        "localize", video_file, "what is the square doing?", "--frames", 8, "--keyframes", 2, "--json", *TINY
    )
    assert r.exit_code == 0, r.output
    res = LocalizeResult.model_validate_json(r.stdout)
    assert len(res.frames) == 8 and len(res.keyframes) == 2 and res.model.random_weights


def test_localize_with_options_answers_and_validates(video_file):
    r = run(*_forward(video_file), "--frames", 8, "--keyframes", 2, "--json", *TINY)
    assert r.exit_code == 0, r.output
    res = ForwardResult.model_validate_json(r.stdout)
    assert res.answer.answer_letter in "AB" and len(res.answer.option_probs) == 2


def test_localize_table_and_plot(video_file, tmp_path):
    png = tmp_path / "plot.png"
    r = run("localize", video_file, "what?", "-o", "a.", "-o", "b.", "-n", 8, "-k", 2, "--plot", png, *TINY)
    assert r.exit_code == 0, r.output
    assert "keyframes:" in r.stdout and "answer:" in r.stdout and "RANDOM WEIGHTS" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_answer_command(video_file):
    r = run("answer", video_file, "q?", "-o", "a.", "-o", "b.", "--at", 0.5, "--at", 2.0, "--json", *TINY)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["frame_indices"] == [15, 60]


def test_info_and_selectors():
    r = run("info", "--json", *TINY)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["random_weights"] is True and data["precision"] == {
        "vit": "fp32",
        "qformer": "fp32",
        "t5": "fp32",
    }
    r = run("selectors", "--json")
    assert {"uniform", "localizer", "random", "oracle"} <= set(json.loads(r.stdout))


def test_convert_then_load_offline(tmp_path, video_file):
    out = tmp_path / "model"
    r = run("convert", out, "--model", "tiny-random", "--json")
    assert r.exit_code == 0, r.output
    a = run(
        "localize", video_file, "q?", "-n", 4, "-k", 1, "--json", "--model", "tiny-random", "--device", "cpu"
    )
    b = run("localize", video_file, "q?", "-n", 4, "-k", 1, "--json", "--model", out, "--device", "cpu")
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    assert [f["score"] for f in ra["frames"]] == [f["score"] for f in rb["frames"]]
    r = run("convert", out, "--model", "tiny-random")
    assert r.exit_code != 0 and "not empty" in r.stderr


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, video_file):
    d = tmp_path_factory.mktemp("bad")
    (d / "text.mp4").write_text("this is not a video\n")
    (d / "empty.mp4").write_bytes(b"")
    from sevila_tools.synthetic import make_zero_frame_video

    make_zero_frame_video(d / "zero.mp4")
    good = video_file.read_bytes()
    (d / "corrupt.mp4").write_bytes(good[:200] + b"\x00" * 500)
    return d


@pytest.mark.parametrize(
    ("case", "args", "needle"),
    [
        ("missing path", ["{d}/nope.mp4", "q?"], "not found"),
        ("directory", ["{d}", "q?"], "directory"),
        ("non-video file", ["{d}/text.mp4", "q?"], "video"),
        ("empty file", ["{d}/empty.mp4", "q?"], "empty"),
        ("corrupt video", ["{d}/corrupt.mp4", "q?"], "video"),
        ("zero-frame video", ["{d}/zero.mp4", "q?"], "video"),
        ("empty question", ["{v}", "   "], "question is empty"),
        ("six options", ["{v}", "q?", *sum([["-o", c] for c in "abcdef"], [])], "at most 5"),
        ("one option", ["{v}", "q?", "-o", "a"], "at least 2 options"),
        ("keyframes > frames", ["{v}", "q?", "-n", "4", "-k", "5"], "num_keyframes"),
        ("start >= end", ["{v}", "q?", "--start", "2", "--end", "1"], "start"),
        ("unknown selector", ["{v}", "q?", "-s", "magic"], "unknown selector"),
    ],
)
def test_bad_input_one_line_error(case, args, needle, bad_files, video_file):
    args = [a.format(d=bad_files, v=video_file) for a in args]
    r = run("localize", *args, *TINY)
    assert r.exit_code != 0, case
    err = r.stderr.strip()
    assert err.startswith("error:") and needle in err, (case, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in r.output, (case, r.output)


def test_unknown_model_offline(video_file):
    r = run(
        "localize",
        video_file,
        "q?",
        "--model",
        "nobody/not-a-model",
        "--checkpoint",
        "none",
        "--device",
        "cpu",
    )
    assert r.exit_code != 0
    assert "offline" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_installed_entry_point_json_and_errors(video_file, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(
        [str(SEVILA), "localize", str(video_file), "q?", "-n", "4", "-k", "2", "--json", *TINY],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    LocalizeResult.model_validate_json(p.stdout)
    p = subprocess.run(
        [str(SEVILA), "localize", str(tmp_path / "missing.mp4"), "q?", *TINY],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode != 0 and "Traceback" not in p.stderr and "not found" in p.stderr
    p = subprocess.run(
        [str(SEVILA), "--debug", "localize", str(tmp_path / "missing.mp4"), "q?", *TINY],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode != 0 and "Traceback" in p.stderr


@pytest.mark.parametrize("selector", ["uniform", "random", "localizer", "clip", "moment_detr", "scene"])
def test_localize_with_every_selector_offline(video_file, selector):
    r = run(*_forward(video_file), "-n", 8, "-k", 2, "--selector", selector, "--json", *TINY)
    assert r.exit_code == 0, r.output
    res = ForwardResult.model_validate_json(r.stdout)
    idx = [k.frame_index for k in res.localization.keyframes]
    assert len(idx) == 2 and idx == sorted(idx) and all(0 <= i < 90 for i in idx)
    assert res.localization.selector == selector


def test_oracle_needs_gold_answer(video_file):
    r = run(
        "localize", video_file, "q?", "-o", "a.", "-o", "b.", "-n", 8, "-k", 2, "--selector", "oracle", *TINY
    )
    assert r.exit_code != 0 and "gold answer" in r.stderr


def test_bad_precision_env(monkeypatch):
    monkeypatch.setenv("SEVILA_T5_DTYPE", "fp8")
    r = run("info", *TINY)
    assert r.exit_code != 0 and "t5_dtype must be fp32, fp16 or bf16" in r.stderr


def test_demo_command(tmp_path):
    r = run("demo", "--out", tmp_path / "demo", "--device", "cpu", "--model", "tiny-random")
    assert r.exit_code == 0, r.output
    assert "keyframes:" in r.stdout and "answer: (" in r.stdout and "RANDOM WEIGHTS" in r.stdout
    assert (tmp_path / "demo" / "demo_plot.png").read_bytes()[:4] == b"\x89PNG"


def test_score_through_installed_entry_point(real_data):
    qvh = real_data / "qvhighlights"
    p = subprocess.run(
        [
            str(SEVILA),
            "score",
            "qvhighlights",
            "--predictions",
            str(qvh / "sample_val_preds.jsonl"),
            "--annotations",
            str(qvh / "highlight_val_release.jsonl"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == json.loads((qvh / "sample_val_preds_metrics_raw.json").read_text())


def test_localize_selector_options(video_file):
    base = ["localize", video_file, "q?", "-n", 8, "-k", 2, "--selector", "moment_detr", "--json", *TINY]
    r = run(*base, "--long-video", "stride")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["selection"]["config"]["long_video"] == "stride"
    r = run(*base, "--long-video", "bogus")
    assert r.exit_code != 0 and "long_video" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # --clip-model replaces the tiny CLIP: an unknown id while offline is a one-line error naming it
    r = run(
        "localize",
        video_file,
        "q?",
        "-n",
        8,
        "-k",
        2,
        "--selector",
        "clip",
        "--clip-model",
        "nobody/no-clip",
        *TINY,
    )
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert (
        r.exit_code != 0
        and len(errors) == 1
        and "nobody/no-clip" in errors[0]
        and "Traceback" not in r.output
    )
