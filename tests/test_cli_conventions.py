"""Every command behaves the same: readable --help, one ``error:`` line (or Typer's usage, exit 2) for bad
input and never a traceback; the README's command table matches the app."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from sevila_tools.cli.app import app

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "tiny-random", "--device", "cpu"]


def _commands() -> list[str]:
    return sorted(get_command(app).commands)  # type: ignore[attr-defined]


def _bad_inputs(tmp: Path) -> dict[str, list[str]]:
    missing, garbage = tmp / "missing.mp4", tmp / "garbage.mp4"
    garbage.write_text("this is not a video")
    ann = str(tmp / "missing.csv")
    train = ["--dataset", "nextqa", "--annotations", ann, "--videos", str(tmp), "--out", str(tmp / "o"), *TINY]
    return {
        "localize": [str(missing), "q?", *TINY],
        "answer": [str(garbage), "q?", "-o", "a", "-o", "b", "--at", "1", "-n", "4", *TINY],
        "convert": [str(tmp / "out"), "--model", str(tmp / "no_such_model")],
        "info": ["--model", str(tmp / "no_such_model")],
        "selectors": ["--no-such-flag"],
        "demo": ["--model", str(tmp / "no_such_model"), "--out", str(tmp / "demo")],
        "moments": [str(garbage), "a query", *TINY],
        "score": ["--dataset", "nextqa", "--predictions", str(tmp / "p.jsonl"), "--annotations", ann],
        "eval": ["--dataset", "nextqa", "--annotations", ann, "--videos", str(tmp), "--out", str(tmp / "e"), *TINY],
        "ablate": ["--dataset", "nextqa", "--annotations", ann, "--videos", str(tmp), "--out", str(tmp / "a"),
                   "--grid", "4:8", *TINY],
        "pseudo-label": train,
        "refine": train,
        "finetune": train,
        "pretrain-localizer": ["--annotations", ann, "--videos", str(tmp), "--out", str(tmp / "o"), *TINY],
        "self-refine": train,
        "mcp": ["--allow-dir", str(tmp / "no_such_dir"), *TINY],
        "bench": ["--settings", "x", "--size", "tiny"],
        "web": ["--allow-dir", str(tmp / "no_such_dir"), *TINY],
        "synth": ["needleqa", "--out", str(garbage)],
        "select": ["--dataset", "nextqa", "--annotations", ann, "--videos", str(tmp), "--out", str(tmp / "s"), *TINY],
        "convert-frames": [str(tmp / "missing.jsonl"), "--to", "bolt", "--out", str(tmp / "b.json")],
    }


def test_every_command_has_a_bad_input_case(tmp_path):
    assert sorted(_bad_inputs(tmp_path)) == _commands()


@pytest.mark.parametrize("command", _commands())
def test_help_reads_like_a_cli(command):
    r = CliRunner().invoke(app, [command, "--help"], terminal_width=120)
    assert r.exit_code == 0, r.output
    assert not re.search(r"<bool>|<list\[|\{video\}|\[default: None\]", r.output), r.output


@pytest.mark.parametrize("command", _commands())
def test_bad_input_is_one_error_line(command, tmp_path):
    args = _bad_inputs(tmp_path)[command]
    r = CliRunner().invoke(app, [command, *args])
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output and "Traceback" not in (r.stderr or "")
    if r.exit_code == 2 and "Usage:" in r.stderr:
        return  # Typer's own usage error for a malformed command line
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr


def test_version():
    from sevila_tools import __version__

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"sevila-tools {__version__}"


def test_readme_command_table_matches_the_app():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `sevila ([a-z-]+)", section, flags=re.M))
    assert listed == set(_commands())
    group = get_command(app)
    for row in re.findall(r"^\| `sevila ([a-z-]+)([^`]*)`", section, flags=re.M):
        name, usage = row
        params = {o for p in group.commands[name].params for o in p.opts}  # type: ignore[attr-defined]
        for flag in re.findall(r"(--[a-z][a-z-]*)", usage):
            assert flag in params, f"README: sevila {name} has no {flag}"


def test_help_does_not_import_torch():
    """``sevila --help`` stays fast: building the CLI imports no model code."""
    import subprocess
    import sys

    code = "import sys, sevila_tools.cli.app; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_localize_uniform_marks_every_keyframe_in_its_table(video_file):
    """The table lists the frames the selector read, so every keyframe is a marked row (uniform: k of k)."""
    import json

    r = CliRunner().invoke(app, ["localize", str(video_file), "q?", "-n", "16", "-k", "4", "--selector", "uniform",
                                 *TINY, "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    table = {f["frame_index"]: f["keyframe"] for f in res["frames"]}
    assert [k["frame_index"] for k in res["keyframes"]] == [i for i, on in table.items() if on]
    assert len(res["keyframes"]) == 4 and all(table.values())


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--at", "1", "-n", "4"], "--at and --frames exclude each other"),
     (["--at", "2.5", "--start", "0", "--end", "2"], "--at 2.5 is outside the window")],
)
def test_answer_refuses_conflicting_frame_flags(video_file, extra, message):
    r = CliRunner().invoke(app, ["answer", str(video_file), "q?", "-o", "a", "-o", "b", *extra, *TINY])
    assert r.exit_code != 0 and r.stderr.startswith("error: ") and message in r.stderr
