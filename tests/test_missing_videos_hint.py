"""A run whose videos are all missing says why when the dataset knows (NExT-QA without its VidOR id map)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.eval.datasets import get_dataset, load_annotations, preflight
from sevila_tools.synthetic import make_video

HEADER = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4"
HINT = ("NExT-QA videos are found through the VidOR id map: add --video-map map_vid_vidorID.json (it comes with the "
        "NExT-QA annotations)")


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """NExT-QA's real layout: ``videos/<VidOR dir>/<id>.mp4`` and the id map."""
    root = tmp_path_factory.mktemp("nextqa_layout")
    make_video(root / "videos" / "0000" / "2401075277.mp4", num_frames=10, fps=10, width=64, height=48)
    (root / "map.json").write_text(json.dumps({"2401075277": "0000/2401075277"}))
    (root / "val.csv").write_text(HEADER + "\n2401075277,10,64,48,what moves,0,0,CW,a,b,c,d,e\n")
    return root


def _eval(layout: Path, out: Path, *extra: str):
    args = ["eval", "-d", "nextqa", "--annotations", str(layout / "val.csv"), "--videos", str(layout / "videos"),
            "--out", str(out), "--model", "tiny-random", "--device", "cpu", *extra]
    return CliRunner().invoke(app, args)


def test_eval_without_the_map_says_to_add_it(layout, tmp_path):
    r = _eval(layout, tmp_path / "run")
    assert r.exit_code != 0
    assert r.stderr.strip().splitlines() == [
        f"error: 1 of 1 videos missing (first: {layout / 'videos' / '2401075277.mp4'}); {HINT}; pass --skip-missing "
        "to evaluate the others"]


def test_the_hint_only_without_a_map(layout, tmp_path):
    spec = get_dataset("nextqa")
    assert spec.missing_videos_hint(None) == HINT and spec.missing_videos_hint(layout / "map.json") is None
    assert get_dataset("star").missing_videos_hint(None) is None  # STAR's files are named by their ids
    wrong = {"2401075277": "1111/2401075277"}
    report = preflight(load_annotations("nextqa", layout / "val.csv", layout / "videos", wrong))
    assert report.summary(spec.missing_videos_hint(wrong)).endswith("1111/2401075277.mp4)")
    ok = preflight(load_annotations("nextqa", layout / "val.csv", layout / "videos", layout / "map.json"))
    assert ok.missing == [] and ok.summary(HINT) == "0 of 1 videos missing"  # nothing missing: no hint
