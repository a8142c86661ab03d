"""Moments for any video: ``find_moments`` (CLI ``sevila moments``, agent tool) equals the eval path."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.eval.predict import find_moments
from sevila_tools.eval.runner import read_records, run_eval
from sevila_tools.schemas import MomentsResult
from sevila_tools.synthetic import make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("moments")
    return make_video(folder / "vid_a.mp4", num_frames=120, fps=30, width=160, height=120)


def test_moments_equal_the_eval_path(tiny_runtime, clip, tmp_path):
    ann = tmp_path / "qvh.jsonl"
    rec = {"qid": 7, "query": "a square moves", "duration": 4.0, "vid": "vid_a", "relevant_windows": [[0, 2]],
           "relevant_clip_ids": [0], "saliency_scores": [[4, 4, 4]]}
    ann.write_text(json.dumps(rec) + "\n")
    run_eval({"dataset": "qvhighlights", "annotations": ann, "videos": clip.parent, "out": tmp_path / "run",
              "frames": 10, "cache": False}, runtime=tiny_runtime, progress=False)
    sub = read_records(tmp_path / "run" / "predictions.jsonl")[0]
    got = find_moments(tiny_runtime, {"video": str(clip), "query": "a square moves", "num_frames": 10})
    MomentsResult.model_validate(got.model_dump())
    assert got.duration == pytest.approx(4.0)
    assert got.pred_relevant_windows == sub["pred_relevant_windows"]
    assert got.pred_saliency_scores == sub["pred_saliency_scores"]
    assert [f.time for f in got.frames] == sub["frame_sec"] and [int(f.relevant) for f in got.frames] == sub["frame_yes"]
    assert len(got.pred_saliency_scores) == 2  # one per 2-s clip of a 4-s video
    assert "toolkit" in got.span_rule and got.notice


def test_cli_moments_json_and_bad_input(clip, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["moments", str(clip), "a square", "-n", "8", "--model", "tiny-random", "--json"])
    assert r.exit_code == 0, r.output
    res = MomentsResult.model_validate_json(r.stdout)
    assert 1 <= len(res.pred_relevant_windows) <= 10 and len(res.frames) == 8
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    r = runner.invoke(app, ["moments", str(bad), "a square", "--model", "tiny-random"])
    assert r.exit_code != 0 and r.stderr.count("\n") == 1 and r.stderr.startswith("error:")
