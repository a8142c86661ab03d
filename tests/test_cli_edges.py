"""What a new user hit on the command line (issue 19, item 4): each claim as it reads in the terminal."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.cli.common import STATE, setup_logging

TINY = ["--model", "tiny-random", "--device", "cpu"]


def run(*args, **kw):
    return CliRunner().invoke(app, [str(a) for a in args], **kw)


def test_offline_model_failure_ends_with_a_hint(video_file):
    r = run("localize", video_file, "q?", "--model", "nobody/not-a-model", "--checkpoint", "none", "--device", "cpu")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.strip().endswith("offline? try --model tiny-random (or tiny-trained), or a local folder from "
                                     "`sevila convert`")


def test_info_without_model_still_shows_versions_and_device(tmp_path):
    """Offline with an empty hub cache the default model cannot load: versions and device still print, exit 0."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "SEVILA_MODEL": ""}
    env.pop("SEVILA_MODEL")
    code = "from sevila_tools.cli.app import main; main()"
    p = subprocess.run([sys.executable, "-c", code, "info", "--json"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["device"] == "cpu" and data["versions"]["torch"] and "did not load" in data["model"]
    assert "--model tiny-random" in data["model"]


def test_mcp_without_the_extra_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mcp", None)  # import mcp -> ImportError
    r = run("mcp", "--allow-dir", tmp_path, *TINY)
    assert r.exit_code == 2 and r.stderr.strip() == (
        'error: sevila mcp needs mcp: pip install "sevila-tools[agents]" (in a clone: '
        '.venv/bin/pip install -e ".[agents]")')


def test_a_padded_video_says_so_outside_json(tmp_path):
    from sevila_tools.synthetic import make_video

    one = make_video(tmp_path / "one.mp4", num_frames=1, fps=30)
    r = run("localize", one, "q?", "-n", 4, "-k", 2, *TINY)
    assert r.exit_code == 0, r.output
    assert "note: padded: the video has fewer frames than requested" in r.stdout


def test_missing_and_undecodable_videos_share_an_exit_code(tmp_path):
    (tmp_path / "garbage.mp4").write_text("not a video")
    codes = {run("localize", tmp_path / name, "q?", *TINY).exit_code for name in ("nope.mp4", "garbage.mp4")}
    assert codes == {1}


def test_out_pointing_at_a_file_is_one_plain_sentence(tmp_path):
    (tmp_path / "file").write_text("x")
    r = run("eval", "-d", "nextqa", "-a", tmp_path / "a.csv", "--videos", tmp_path, "--out", tmp_path / "file", *TINY)
    assert r.exit_code == 2 and r.stderr.strip() == f"error: --out is a file, expected a folder: {tmp_path / 'file'}"


def test_video_reader_fallback_notes_go_to_the_log_not_the_terminal(capsys):
    """The terminal shows library warnings, but a reader's fallback note only with --debug; a run's log file (any
    other handler) still receives it."""
    setup_logging()
    kept: list[str] = []
    other = logging.Handler()
    other.emit = lambda record: kept.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("sevila_tools").addHandler(other)
    try:
        logging.getLogger("sevila_tools.video.decode").warning("decord cannot open x.mp4; falling back to PyAV")
        logging.getLogger("sevila_tools.runtime").warning("text truncated")
        quiet = capsys.readouterr().err
        STATE.debug = True
        logging.getLogger("sevila_tools.video.decode").warning("decord cannot open y.mp4; falling back to PyAV")
    finally:
        STATE.debug = False
        logging.getLogger("sevila_tools").removeHandler(other)
    assert "falling back" not in quiet and "warning: text truncated" in quiet
    assert "y.mp4" in capsys.readouterr().err and len(kept) == 3


def test_ctrl_c_on_a_resumable_command_says_how_to_continue(monkeypatch, tmp_path):
    import sevila_tools.eval.runner as runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_eval", interrupted)
    r = run("eval", "-d", "nextqa", "-a", tmp_path / "a.csv", "--videos", tmp_path, "--out", tmp_path / "o", *TINY)
    assert r.exit_code == 130 and r.stderr.strip() == "interrupted: rerun with --resume to continue"


def test_score_allow_missing_json_gives_a_count_and_a_file(real_data, tmp_path):
    ann = real_data / "nextqa" / "val.csv"
    rows = list(csv.DictReader(open(ann, newline="")))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"qid": f"{r['video']}_{r['qid']}", "prediction": 0}) + "\n"
                             for r in rows[:40]))
    r = run("score", "-d", "nextqa", "-p", preds, "-a", ann, "--allow-missing", "--json")
    assert r.exit_code == 0, r.output
    missing = json.loads(r.stdout)["missing"]
    listed = Path(missing["file"]).read_text().split()
    assert missing["count"] == len(rows) - 40 == len(listed) and missing["first"] == listed[:10]
    assert f"questions without prediction were not scored (ids in {missing['file']})" in r.stderr


def test_piped_tables_keep_their_titles_on_one_line(video_file):
    """The moments table is narrow (4 columns); its long title is not wrapped to the table's width."""
    query = "a small square moves from the left side of the frame to the right"
    r = run("moments", video_file, query, "-n", 8, *TINY)
    assert r.exit_code == 0, r.output
    assert f"moments of {video_file.name} (3.0 s): {query}" in r.stdout
