"""NeedleQA: the plan's guarantees, byte-identical generation, the files every command reads, the CLI's errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.eval.datasets import get_dataset
from sevila_tools.synth import NeedleQAConfig, run_needleqa
from sevila_tools.synth.render import SPRITE_SIZE, sprite_centre
from sevila_tools.synth.world import COLOURS, KINDS, PLACES, TEMPLATES, plan_video
from sevila_tools.video import probe, read_frames, sample_indices

SMALL = {"videos": 4, "duration": 8.0, "fps": 8.0, "size": "96x64", "splits": "0.5,0.25,0.25"}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nq") / "set"
    run_needleqa(NeedleQAConfig(out=out, seed=7, **SMALL), progress=False)
    return out


@pytest.mark.parametrize(("frames", "seed"), [(64, 1), (160, 2), (333, 3), (1200, 4)])
def test_every_event_is_short_and_holds_a_uniform_candidate(frames, seed):
    """<= 10 % of the video, one of SeViLA's 32 uniform candidates inside (computed by the toolkit's sampler),
    no overlap, shapes and places that differ between the events, and one coloured event (the target; the
    distractor events are grey)."""
    mids, _, _ = sample_indices(frames, 32, 8.0)
    for index in range(40):
        plan = plan_video(seed, index, frames, 8.0, 224, 224)
        spans = sorted((e.first, e.last) for e in plan.events)
        assert all(b[0] > a[1] for a, b in zip(spans, spans[1:], strict=False))
        for e in plan.events:
            assert 0 <= e.first <= e.last < frames and e.last - e.first + 1 <= 0.1 * frames
            assert any(e.first <= m <= e.last for m in mids)
        for attr in ("kind", "place"):
            assert len({getattr(e.sprite, attr) for e in plan.events}) == 3
        assert [e.sprite.colour != "grey" for e in plan.events] == [i == plan.target for i in range(3)]


def test_the_question_asks_about_the_target_and_no_distractor_event_is_an_option():
    seen = set()
    for index in range(60):
        plan = plan_video(5, index, 160, 8.0, 224, 224)
        q, target = plan.question, plan.target_event.sprite
        asks = TEMPLATES[q.template][1]
        assert q.options == tuple({"colour": COLOURS, "kind": KINDS, "place": PLACES}[asks])  # fixed order
        assert len(set(q.options)) == 5 and q.options[q.answer] == getattr(target, asks)
        assert q.text == TEMPLATES[q.template][0].format(kind=target.kind, place=target.place)
        others = [getattr(e.sprite, asks) for i, e in enumerate(plan.events) if i != plan.target]
        assert others == ["grey", "grey"] and "grey" not in q.options
        seen.add((q.template, q.answer))
    assert len(seen) >= 12  # every template, and the answers spread over the five letters


def test_same_seed_same_bytes_other_seed_other_videos(small_set, tmp_path):
    again = tmp_path / "again"
    run_needleqa(NeedleQAConfig(out=again, seed=7, **SMALL), progress=False)
    assert _digest(again) == _digest(small_set)
    other = tmp_path / "other"
    run_needleqa(NeedleQAConfig(out=other, seed=8, **SMALL), progress=False)
    assert (other / "videos" / "nq8_00000.mp4").read_bytes() != (small_set / "videos" / "nq7_00000.mp4").read_bytes()


def test_files_layout_and_real_h264(small_set):
    assert sorted(p.name for p in (small_set / "annotations").iterdir()) == [
        "spans_test.jsonl", "spans_train.jsonl", "spans_val.jsonl", "test.csv", "train.csv", "val.csv"]
    info = probe(str(small_set / "videos" / "nq7_00003.mp4"), decoder="pyav")
    assert (info.num_frames, info.fps, info.width, info.height) == (64, 8.0, 96, 64)
    import av

    with av.open(str(small_set / "videos" / "nq7_00003.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    readme = (small_set / "README.md").read_text()
    assert "--seed 7" in readme and "| train | 2 | 6 |" in readme


def test_the_csv_reads_as_needleqa_and_as_nextqa(small_set):
    ann, videos = small_set / "annotations" / "train.csv", small_set / "videos"
    plan = plan_video(7, 0, 64, 8.0, 96, 64)
    mine = get_dataset("needleqa").load(ann, videos)
    assert [s.qid for s in mine] == ["nq7_00000_0", "nq7_00001_0"]
    first = mine[0]
    assert first.question == plan.question.text + "?"
    assert first.options == [o + "." for o in plan.question.options] and first.answer == plan.question.answer
    assert first.qtype == plan.question.template and first.video == str(videos / "nq7_00000.mp4")
    assert first.extra["event_window"] == plan.target_event.window(8.0)
    theirs = get_dataset("nextqa").load(ann, videos)
    assert [(s.qid, s.question, s.options, s.answer) for s in theirs] == \
        [(s.qid, s.question, s.options, s.answer) for s in mine]
    assert get_dataset("nextqa").score({s.qid: s.answer for s in theirs}, theirs)["overall"] == 100.0


def test_needleqa_scores_per_template():
    from sevila_tools.eval.datasets import Sample

    def s(i: int, t: str) -> Sample:
        return Sample(dataset="needleqa", qid=f"v{i}_0", video_id=f"v{i}", video="x", question="q?",
                      options=["a.", "b.", "c.", "d.", "e."], answer=1, qtype=t)

    samples = [s(0, "shape"), s(1, "shape"), s(2, "place"), s(3, "shape_place")]
    metrics = get_dataset("needleqa").score({"v0_0": 1, "v1_0": 0, "v2_0": 1, "v3_0": 4}, samples)
    assert metrics["display"] == {"shape": 50.0, "place": 100.0, "shape_place": 0.0, "Acc": 50.0}
    assert metrics["headline"] == {"metric": "overall", "value": 50.0}


def test_span_windows_cover_exactly_the_frames_that_show_the_event(small_set):
    """Decoded frames: the event's colour is at its place on every frame inside the window, and on none of the
    frames around it."""
    spans = get_dataset("qvhighlights").load(small_set / "annotations" / "spans_val.jsonl", small_set / "videos")
    assert len(spans) == 3 and all(s.duration == 8.0 for s in spans)
    plan = plan_video(7, 2, 64, 8.0, 96, 64)
    for sample, event in zip(spans, plan.events, strict=True):
        assert sample.question == event.sprite.caption() and sample.windows == [event.window(8.0)]
        if event.sprite.colour == "grey":  # a grey event is not told apart from the greyish background this way
            continue
        frames, _ = read_frames(sample.video, list(range(64)), decoder="pyav", size=None)
        cx, cy = sprite_centre(event.sprite, 96, 64)
        rgb = np.array(event.sprite.rgb)
        near = [np.abs(f[int(cy) - 1 : int(cy) + 2, int(cx) - 1 : int(cx) + 2].reshape(-1, 3).mean(0) - rgb).max() < 40
                for f in frames]
        shown = [i for i, t in enumerate(range(64)) if sample.windows[0][0] <= t / 8.0 <= sample.windows[0][1]]
        assert [i for i, ok in enumerate(near) if ok] == shown
    assert SPRITE_SIZE < 0.5


def test_clip_ids_and_saliency_follow_qvhighlights(small_set):
    lines = [json.loads(x) for x in (small_set / "annotations" / "spans_train.jsonl").read_text().splitlines()]
    assert [x["qid"] for x in lines] == list(range(6))
    for x in lines:
        (start, end), = x["relevant_windows"]
        assert x["relevant_clip_ids"] == [i for i in range(4) if 2 * i <= end and 2 * i + 2 > start]
        assert x["saliency_scores"] == [[4, 4, 4]] * len(x["relevant_clip_ids"])


def _cli(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_generates_and_refuses_bad_out(tmp_path):
    out = tmp_path / "nq"
    r = _cli("synth", "needleqa", "--out", out, "--videos", 2, "--seed", 3, "--duration", 8, "--size", "64x64",
             "--json", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["questions"] == {"train": 2, "val": 0, "test": 0}
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    cases = [
        (["--out", a_file], f"error: --out is a file, expected a folder: {a_file}"),
        (["--out", out], f"error: --out {out} is not empty; pass --overwrite to replace an earlier needleqa set"),
        (["--out", tmp_path, "--overwrite"], f"error: --out {tmp_path} is not empty and holds no needleqa set; "
                                             "refusing to overwrite it"),
        (["--out", tmp_path / "n2", "--size", "65x64"], "error: size must be even"),
        (["--out", tmp_path / "n2", "--duration", 2], "error: duration x fps gives 16 frames"),
    ]
    for args, message in cases:
        r = _cli("synth", "needleqa", *args)
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert r.exit_code != 0 and len(lines) == 1 and lines[0].startswith(message), r.stderr
    r = _cli("synth", "ballqa", "--out", tmp_path / "n3")
    assert r.exit_code == 2 and r.stderr.strip() == "error: GENERATOR must be 'needleqa' (got 'ballqa')"
    r = _cli("synth", "needleqa", "--out", out, "--videos", 1, "--seed", 4, "--duration", 8, "--overwrite", "-q")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["nq4_00000.mp4"]


def test_installed_entry_point_generates_and_refuses(tmp_path):
    """`sevila synth` through the installed script: JSON summary and files; a bad --size is one error line."""
    import subprocess
    import sys

    sevila = Path(sys.executable).parent / "sevila"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "nq"
    p = subprocess.run([str(sevila), "synth", "needleqa", "--out", str(out), "--videos", "1", "--seed", "4",
                        "--duration", "8", "--size", "64x64", "--json", "-q"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["questions"] == {"train": 1, "val": 0, "test": 0}
    assert sorted(x.name for x in (out / "videos").iterdir()) == ["nq4_00000.mp4"]
    p = subprocess.run([str(sevila), "synth", "needleqa", "--out", str(tmp_path / "n2"), "--size", "65x64"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and p.stderr.splitlines() == [
        "error: size must be even and between 64 and 1920 on each side, got '65x64'"]
