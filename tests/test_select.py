"""``sevila select`` and the ``file`` selector: a dataset's keyframes in ``frames.jsonl``, read back by
``sevila eval --selector file`` (tiny model, synthetic videos)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import torch
from typer.testing import CliRunner

from sevila_tools import __version__
from sevila_tools.cli.app import app
from sevila_tools.eval.runner import read_records, run_eval
from sevila_tools.eval.select import run_select
from sevila_tools.frames import shipped_schema
from sevila_tools.provenance import file_sha256
from sevila_tools.synthetic import make_video
from sevila_tools.video import sample_indices

TINY = ["--model", "tiny-random", "--device", "cpu"]
BIN = Path(sys.executable).parent
ROWS = [("v1", 0, "what is the square doing", 1), ("v2", 0, "where does it go", 2), ("v1", 1, "why does it stop", 0)]


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three NExT-QA csv rows over two synthetic 30-fps videos (v1 asked twice, not adjacent)."""
    root = tmp_path_factory.mktemp("select")
    videos = root / "videos"
    make_video(videos / "v1.mp4", num_frames=60, fps=30, width=160, height=120)
    make_video(videos / "v2.mp4", num_frames=45, fps=30, width=160, height=120)
    ann = root / "val.csv"
    with open(ann, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
                    "a0", "a1", "a2", "a3", "a4"])
        for video, qid, question, answer in ROWS:
            w.writerow([video, 60, 160, 120, question, answer, qid, "CW", "left", "right", "up", "down", "still"])
    return {"root": root, "videos": videos, "ann": ann, "qids": [f"{v}_{q}" for v, q, _, _ in ROWS]}


def _args(data, out, *extra):
    return ["select", "-d", "nextqa", "--annotations", data["ann"], "--videos", data["videos"], "--out", out,
            "-n", "8", "-k", "3", *TINY, *extra]


def _eval_cfg(data, out, **kw):
    return {"dataset": "nextqa", "annotations": data["ann"], "videos": data["videos"], "out": out, "frames": 8,
            "keyframes": 3, "cache": False, **kw}


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def selected(data):
    run = data["root"] / "sel"
    r = _cli(*_args(data, run, "--cache-dir", data["root"] / "cache", "--json"))
    assert r.exit_code == 0, r.output
    return {"run": run, "summary": json.loads(r.stdout), "frames": run / "frames.jsonl",
            "records": _lines(run / "frames.jsonl")}


def test_one_record_per_question_in_annotation_order(selected, data):
    recs = selected["records"]
    assert [r["question_id"] for r in recs] == data["qids"]
    for rec, (video, _, question, _) in zip(recs, ROWS, strict=True):
        assert rec["format"] == "sevila-frames/1" and rec["dataset"] == "nextqa" and rec["video"] == video
        assert rec["video_path"] == str(data["videos"] / f"{video}.mp4") and rec["question"] == question + "?"
        assert rec["selector"] == "localizer" and rec["k"] == 3 and rec["fps"] == 30.0
        assert rec["num_frames"] == {"v1": 60, "v2": 45}[video]
        idx = rec["native_indices"]
        assert idx == sorted(idx) and rec["timestamps_s"] == [i / 30.0 for i in idx]
        cand = rec["candidates"]
        assert len(cand["native_indices"]) == 8 and set(idx) <= set(cand["native_indices"])
        by_frame = dict(zip(cand["native_indices"], cand["scores"], strict=True))
        assert rec["scores"] == [by_frame[i] for i in idx]
        top3 = sorted(cand["native_indices"], key=lambda i: -by_frame[i])[:3]  # the Localizer keeps the top 3
        assert sorted(top3) == idx
        assert rec["provenance"] == {"model": "tiny-random", "toolkit_version": __version__,
                                     "selector_config": {"score": "raw yes logit at decoder step 0"}}
    s = selected["summary"]
    assert (s["records"], s["errors"], s["processed"], s["samples"]) == (3, 0, 3, 3)
    assert s["frames_file"] == str(selected["frames"]) and s["config"]["selector"] == "localizer"
    assert json.loads((selected["run"] / "summary.json").read_text())["records"] == 3


def test_every_written_record_validates_against_the_shipped_schema(selected):
    validator = jsonschema.Draft202012Validator(shipped_schema())
    assert [list(validator.iter_errors(r)) for r in selected["records"]] == [[], [], []]


def test_selected_frames_are_the_keyframes_sevila_eval_reads(selected, data, tiny_runtime, tmp_path):
    run_eval(_eval_cfg(data, tmp_path / "ev"), runtime=tiny_runtime, progress=False)
    preds = {r["qid"]: r for r in read_records(tmp_path / "ev" / "predictions.jsonl")}
    for rec in selected["records"]:
        assert preds[rec["question_id"]]["keyframe_idx"] == rec["native_indices"]


def test_eval_file_selector_reads_exactly_the_files_frames(selected, data, tiny_runtime, tmp_path):
    """Frames that are not the default candidates too: the file selector decodes whatever the file names."""
    recs = [dict(r) for r in selected["records"]]
    recs[1] = {**recs[1], "native_indices": [1, 20, 44], "timestamps_s": [1 / 30, 20 / 30, 44 / 30], "scores": None}
    path = tmp_path / "frames.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    s = run_eval(_eval_cfg(data, tmp_path / "ev", selector="file", selector_options={"path": str(path)}),
                 runtime=tiny_runtime, progress=False)
    preds = {r["qid"]: r for r in read_records(tmp_path / "ev" / "predictions.jsonl")}
    for rec in recs:
        got = preds[rec["question_id"]]
        assert got["keyframe_idx"] == rec["native_indices"] and got["selector"] == "file"
        assert got["keyframe_sec"] == pytest.approx(rec["timestamps_s"], abs=1e-4)
    assert preds["v2_0"]["keyframe_scores"] == [None, None, None]
    assert s.config["frames_decoded_per_video"] == 1  # only the frames the file names are read


def test_bolt_round_trip_gives_the_same_keyframes_in_eval(selected, data, tiny_runtime, tmp_path):
    bolt, back = tmp_path / "bolt.json", tmp_path / "back.jsonl"
    r = _cli("convert-frames", selected["frames"], "--to", "bolt", "--out", bolt)
    assert r.exit_code == 0, r.output
    recs = selected["records"]
    assert json.loads(bolt.read_text()) == {
        "v1": [{"question_id": q["question_id"], "question": q["question"], "frames": q["timestamps_s"]}
               for q in (recs[0], recs[2])],
        "v2": [{"question_id": recs[1]["question_id"], "question": recs[1]["question"],
                "frames": recs[1]["timestamps_s"]}],
    }
    r = _cli("convert-frames", bolt, "--from", "bolt", "-d", "nextqa", "--out", back, "--json")
    assert r.exit_code == 0, r.output
    imported = {x["question_id"]: x for x in _lines(back)}
    assert {q: x["timestamps_s"] for q, x in imported.items()} == {x["question_id"]: x["timestamps_s"] for x in recs}
    run_eval(_eval_cfg(data, tmp_path / "ev", selector="file", selector_options={"path": str(back)}),
             runtime=tiny_runtime, progress=False)
    preds = {r["qid"]: r for r in read_records(tmp_path / "ev" / "predictions.jsonl")}
    assert {q: preds[q]["keyframe_idx"] for q in imported} == {x["question_id"]: x["native_indices"] for x in recs}


@pytest.mark.parametrize("fmt", ["aks", "tspo", "videoitg"])
def test_round_trips_through_the_other_formats_keep_frames_and_ids(selected, data, tmp_path, fmt):
    out = tmp_path / ("their.jsonl" if fmt == "videoitg" else "their" if fmt == "aks" else "their.json")
    ann = ["--annotations", data["ann"], "-d", "nextqa"]
    assert _cli("convert-frames", selected["frames"], "--to", fmt, "--out", out, *ann).exit_code == 0
    src = out / "selected_frames.json" if fmt == "aks" else out
    r = _cli("convert-frames", src, "--from", fmt, "--out", tmp_path / "back.jsonl", *ann, "--fps", "30")
    assert r.exit_code == 0, r.output
    back = _lines(tmp_path / "back.jsonl")
    assert [(x["question_id"], x["native_indices"], x["timestamps_s"]) for x in back] == [
        (x["question_id"], x["native_indices"], x["timestamps_s"]) for x in selected["records"]]


def _one_error_line(r) -> str:
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("other_dataset", "holds frames for star, not nextqa"),
        ("missing_question", "has no frames for 1 of 3 questions (first: v2_0)"),
        ("wrong_k", "holds 3 frames for question v1_0 (3 such questions); run with --keyframes 3"),
        ("bolt_file", "it looks like a bolt file; convert it first: sevila convert-frames"),
        ("no_path", "the file selector needs its file: --selector-option path=FRAMES.jsonl"),
    ],
)
def test_file_selector_bad_inputs_are_one_line(selected, data, tmp_path, case, expected):
    recs, path = selected["records"], tmp_path / "frames.jsonl"
    if case == "other_dataset":
        path.write_text("".join(json.dumps({**r, "dataset": "star"}) + "\n" for r in recs))
    elif case == "missing_question":
        path.write_text("".join(json.dumps(r) + "\n" for r in recs if r["question_id"] != "v2_0"))
    elif case == "bolt_file":
        assert _cli("convert-frames", selected["frames"], "--to", "bolt", "--out", path).exit_code == 0
    else:
        shutil.copy(selected["frames"], path)
    args = ["eval", "-d", "nextqa", "--annotations", data["ann"], "--videos", data["videos"], "--out",
            tmp_path / "ev", "-n", "8", "-k", "2" if case == "wrong_k" else "3", "--selector", "file", *TINY]
    if case != "no_path":
        args += ["--selector-option", f"path={path}"]
    assert expected in _one_error_line(_cli(*args))
    assert not (tmp_path / "ev" / "settings.json").exists()  # refused before the model loaded


def test_convert_frames_bad_inputs_are_one_line(selected, data, tmp_path):
    assert "unknown format 'lmms'; choose one of: aks, bolt, tspo, videoitg" in _one_error_line(
        _cli("convert-frames", selected["frames"], "--to", "lmms", "--out", tmp_path / "x"))
    assert "aks files are positional" in _one_error_line(
        _cli("convert-frames", selected["frames"], "--to", "aks", "--out", tmp_path / "x"))
    assert "--from needs --dataset" in _one_error_line(
        _cli("convert-frames", selected["frames"], "--from", "bolt", "--out", tmp_path / "x"))
    assert "looks like a sevila file, not tspo" in _one_error_line(
        _cli("convert-frames", selected["frames"], "--from", "tspo", "-d", "nextqa", "--out", tmp_path / "x"))
    assert "holds frames for nextqa, not star" in _one_error_line(
        _cli("convert-frames", selected["frames"], "--to", "bolt", "-d", "star", "--out", tmp_path / "x"))
    (tmp_path / "x").write_text("keep")
    assert "already exists; pass --overwrite" in _one_error_line(
        _cli("convert-frames", selected["frames"], "--to", "bolt", "--out", tmp_path / "x"))


def test_resume_after_kill_and_refusals(selected, data, tiny_runtime, tmp_path):
    run = tmp_path / "killed"
    shutil.copytree(selected["run"], run)
    full = selected["frames"].read_bytes()
    lines = full.splitlines(keepends=True)
    (run / "frames.jsonl").write_bytes(lines[0] + lines[1][:30])  # one record and a torn line
    assert "--resume" in _one_error_line(_cli(*_args(data, run, "--no-cache")))
    s = run_select(dict(_eval_cfg(data, run), resume=True), runtime=tiny_runtime, progress=False)
    assert (s.resumed, s.processed, s.records) == (1, 2, 3)
    assert (run / "frames.jsonl").read_bytes() == full
    assert "written with other settings (keyframes: 3 -> 2" in _one_error_line(
        _cli(*_args(data, run, "--resume", "-k", "2")))
    second = _cli(*_args(data, tmp_path / "again", "--cache-dir", data["root"] / "cache", "--json"))
    assert json.loads(second.stdout)["cache"]["hits"] == 2  # the feature cache of the first run


def test_uniform_records_have_midpoint_frames_and_no_scores(data, tiny_runtime, tmp_path):
    run_select(_eval_cfg(data, tmp_path / "u", selector="uniform"), runtime=tiny_runtime, progress=False)
    for rec in _lines(tmp_path / "u" / "frames.jsonl"):
        n = rec["num_frames"]
        assert rec["native_indices"] == sample_indices(n, 3, 30.0)[0]
        assert "scores" not in rec and "candidates" not in rec and rec["selector"] == "uniform"


def test_provenance_names_the_checkpoint_by_its_sha256(data, tmp_path):
    from sevila_tools.tiny import tiny_model

    ckpt = tmp_path / "tiny.pth"
    torch.save({"model": {k: v.clone() for k, v in tiny_model().state_dict().items()}}, ckpt)
    run_select(dict(_eval_cfg(data, tmp_path / "c", limit=1), model="tiny-random", checkpoint=str(ckpt),
                    device="cpu"), progress=False)
    prov = _lines(tmp_path / "c" / "frames.jsonl")[0]["provenance"]
    assert prov["checkpoint"] == str(ckpt) and prov["checkpoint_sha256"] == file_sha256(ckpt)


def test_video_failing_in_the_run_gets_a_valid_error_record(data, tiny_runtime, tmp_path, monkeypatch):
    import sevila_tools.eval.runner as runner_mod
    from sevila_tools.eval.datasets import preflight

    monkeypatch.setattr(runner_mod, "preflight", lambda samples, check_readable=True: preflight(samples, False))
    videos = tmp_path / "videos"
    shutil.copytree(data["videos"], videos)
    (videos / "v1.mp4").write_bytes(os.urandom(4096))
    s = run_select(_eval_cfg(data, tmp_path / "e", videos=videos), runtime=tiny_runtime, progress=False)
    recs = _lines(tmp_path / "e" / "frames.jsonl")
    errors = [r for r in recs if "error" in r]
    assert [r["question_id"] for r in errors] == ["v1_0", "v1_1"] and "cannot decode video" in errors[0]["error"]
    assert set(errors[0]) == {"format", "dataset", "question_id", "video", "error"}
    validator = jsonschema.Draft202012Validator(shipped_schema())
    assert all(not list(validator.iter_errors(r)) for r in recs)
    assert (s.records, s.errors) == (1, 2)


@pytest.mark.slow
def test_two_processes_equal_one(data, tiny_runtime, tmp_path):
    """``accelerate launch`` with 2 CPU processes: the merged frames file equals a one-process run (one BLAS
    thread per process on both sides)."""
    run2 = tmp_path / "two"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_cpu_threads_per_process",
           "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(BIN / "sevila"),
           *[str(a) for a in _args(data, run2, "--no-cache", "--batch-size", "1", "--json")]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["world_size"] == 2 and summary["processed"] == 3 and not list(run2.glob("*.rank*"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_select(_eval_cfg(data, tmp_path / "one", batch_size=1), runtime=tiny_runtime, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert (run2 / "frames.jsonl").read_bytes() == (tmp_path / "one" / "frames.jsonl").read_bytes()


def test_file_selector_outside_dataset_runs_is_one_line(selected, data):
    video = data["videos"] / "v1.mp4"
    line = _one_error_line(_cli("localize", video, "what?", "-n", "4", "-k", "3", "--selector", "file",
                                "--selector-option", f"path={selected['frames']}", *TINY))
    assert "the file selector reads dataset question ids (only usable in dataset runs)" in line
