"""``sevila eval`` / ``run_eval``: tiny model, synthetic videos named after real NExT-QA / QVHighlights ids."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sevila_tools.chain import SevilaChain
from sevila_tools.cli.app import app
from sevila_tools.errors import VideoError
from sevila_tools.eval.datasets import load_annotations, qvh_ground_truth
from sevila_tools.eval.moments import SpanConfig, frames_to_saliency, frames_to_windows, yes_probabilities
from sevila_tools.eval.runner import EvalConfig, read_records, run_eval
from sevila_tools.eval.scorers import load_predictions, score_multiple_choice, score_qvhighlights
from sevila_tools.loading import load_runtime
from sevila_tools.prompts import prompts_for
from sevila_tools.schemas import ForwardRequest
from sevila_tools.synthetic import make_video
from sevila_tools.video import sample_frames

runner = CliRunner()
TINY = ["--model", "tiny-random", "--device", "cpu"]
SMALL = ["--frames", "5", "--keyframes", "2", "--batch-size", "4"]
BIN = Path(sys.executable).parent


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def rt():
    return load_runtime("tiny-random", device="cpu")


@pytest.fixture(scope="module")
def nextqa(real_data, tmp_path_factory):
    """6 real val.csv rows (4 videos, two of them with 2 questions, not adjacent) + synthetic mp4s placed
    at ``<videos>/<dir>/<id>.mp4`` as the real map_vid_vidorID.json says."""
    root = tmp_path_factory.mktemp("nextqa")
    rows = list(csv.DictReader(open(real_data / "nextqa" / "val.csv", newline="")))
    count = Counter(r["video"] for r in rows)
    pairs = [v for v in dict.fromkeys(r["video"] for r in rows) if count[v] >= 2][:2]
    singles = [v for v in dict.fromkeys(r["video"] for r in rows) if v not in pairs][:2]
    first = {v: [r for r in rows if r["video"] == v] for v in pairs + singles}
    chosen = [
        first[pairs[0]][0],
        first[singles[0]][0],
        first[pairs[1]][0],
        first[pairs[0]][1],
        first[singles[1]][0],
        first[pairs[1]][1],
    ]
    ann = root / "val_small.csv"
    with open(ann, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(chosen)
    vmap_path = real_data / "nextqa" / "map_vid_vidorID.json"
    vmap = json.loads(vmap_path.read_text())
    videos = root / "videos"
    for i, vid in enumerate(pairs + singles):
        make_video(videos / (vmap[vid] + ".mp4"), num_frames=30 + 15 * i, fps=30, width=160, height=120)
    samples = load_annotations("nextqa", ann, videos, vmap_path)
    return {"ann": ann, "videos": videos, "map": vmap_path, "samples": samples, "root": root, "vmap": vmap}


def _args(data, out, *extra):
    return [
        "eval",
        "--dataset",
        "nextqa",
        "--annotations",
        data["ann"],
        "--videos",
        data["videos"],
        "--video-map",
        data["map"],
        "--out",
        out,
        *SMALL,
        *TINY,
        *extra,
    ]


@pytest.fixture(scope="module")
def baseline(nextqa):
    run = nextqa["root"] / "base"
    cache = nextqa["root"] / "cacheA"
    r = _cli(*_args(nextqa, run, "--cache-dir", cache, "--json"))
    assert r.exit_code == 0, r.output
    out = run / "predictions.jsonl"
    return {"run": run, "out": out, "summary": json.loads(r.stdout), "cache": cache, "bytes": out.read_bytes()}


def _preds(run: Path) -> Path:
    return run / "predictions.jsonl"


def _base_cfg(data, out, **kw):
    cfg = {
        "dataset": "nextqa",
        "annotations": data["ann"],
        "videos": data["videos"],
        "video_map": data["map"],
        "out": out,
        "frames": 5,
        "keyframes": 2,
        "batch_size": 4,
        "cache": False,
    }
    cfg.update(kw)
    return cfg


# ------------------------------------------------------------------------------------------------ end to end


def test_cli_eval_records_and_metrics(baseline, nextqa):
    samples = nextqa["samples"]
    recs = read_records(baseline["out"])
    assert [r["qid"] for r in recs] == [s.qid for s in samples]  # one record each, annotation order
    for rec, s in zip(recs, samples, strict=True):
        assert rec["video"] == s.video_id and rec["qtype"] == s.qtype and rec["answer"] == s.answer
        assert rec["selector"] == "localizer" and rec["decoding"] == "faithful"
        assert len(rec["keyframe_idx"]) == 2 == len(rec["keyframe_sec"]) == len(rec["keyframe_scores"])
        assert rec["keyframe_idx"] == sorted(rec["keyframe_idx"])
        assert len(rec["letter_probs"]) == 5 and rec["prediction"] == max(
            range(5), key=rec["letter_probs"].__getitem__
        )
        assert isinstance(rec["step0_token"], str)
    summary = baseline["summary"]
    expected = score_multiple_choice("nextqa", load_predictions("nextqa", baseline["out"]), samples)
    for key in ("n", "overall", "per_type", "counts", "merged", "category", "display"):
        assert summary["metrics"][key] == expected[key], key
    assert summary["processed"] == summary["predictions"] == 6 and summary["errors"] == 0
    # each of the 4 videos decoded once although 2 of them have 2 questions in different batches
    assert summary["cache"] == {
        "enabled": True,
        "dir": str(baseline["cache"]),
        "hits": 0,
        "misses": 4,
        "writes": 4,
        "errors": 0,
        "decoded_videos": 4,
    }
    conf = summary["config"]
    assert conf["model"] == "tiny-random" and conf["selector"] == "localizer" and conf["frames"] == 5
    assert conf["keyframes"] == 2 and conf["decoding"] == "faithful" and conf["device"] == "cpu"
    assert conf["random_weights"] is True and conf["versions"]["torch"] == torch.__version__
    assert summary["samples_per_s"] > 0 and summary["batch_size"] == 4
    on_disk = json.loads((baseline["run"] / "summary.json").read_text())  # the run folder keeps the summary
    assert on_disk["metrics"] == summary["metrics"] and on_disk["config"]["versions"] == conf["versions"]
    assert oct((baseline["run"] / "summary.json").stat().st_mode & 0o777) == oct(0o644)


def test_predictions_equal_chain_forward(baseline, nextqa, rt):
    chain = SevilaChain(rt)
    for rec, s in zip(read_records(baseline["out"]), nextqa["samples"], strict=True):
        res = chain.forward(
            ForwardRequest(
                video=s.video, question=s.question, options=s.options, num_frames=5, num_keyframes=2
            )
        )
        assert rec["keyframe_idx"] == [k.frame_index for k in res.localization.keyframes]
        assert rec["keyframe_sec"] == pytest.approx([k.time for k in res.localization.keyframes], abs=1e-4)
        assert rec["keyframe_scores"] == pytest.approx(
            [k.score for k in res.localization.keyframes], abs=1e-4
        )
        assert rec["prediction"] == res.answer.answer_index
        assert rec["letter_probs"] == pytest.approx(res.answer.option_probs, abs=1e-4)
        assert rec["step0_token"] == res.answer.step0_token


def test_second_pass_hits_cache_even_for_copied_videos(baseline, nextqa, tmp_path):
    copied = tmp_path / "copied_videos"  # content identity, not path: a copy of the folder still hits
    shutil.copytree(nextqa["videos"], copied)
    run = tmp_path / "again"
    args = _args(nextqa, run, "--cache-dir", baseline["cache"])
    args[args.index(nextqa["videos"])] = copied
    r = _cli(*args)
    assert r.exit_code == 0, r.output
    assert "4 hits, 0 misses" in r.stdout
    assert f"{baseline['summary']['metrics']['overall']:.2f}" in r.stdout  # the metrics table
    assert _preds(run).read_bytes() == baseline["bytes"]


# ------------------------------------------------------------------------------------------------ resume


def test_resume_after_kill_gives_the_uninterrupted_file(baseline, nextqa, rt, tmp_path):
    run = tmp_path / "killed"
    run.mkdir()
    shutil.copy(baseline["run"] / "settings.json", run / "settings.json")
    lines = baseline["bytes"].splitlines(keepends=True)
    _preds(run).write_bytes(b"".join(lines[:3]) + lines[3][:25])  # 3 complete records + a torn line
    r = _cli(*_args(nextqa, run, "--no-cache"))
    assert r.exit_code != 0 and "--resume" in r.output  # never silently overwritten
    s = run_eval(_base_cfg(nextqa, run, resume=True), runtime=rt, progress=False)
    assert (s.resumed, s.processed) == (3, 3)
    assert _preds(run).read_bytes() == baseline["bytes"]


@pytest.mark.parametrize("change", [{"keyframes": 1}, {"frames": 6}, {"selector": "uniform"}, {"batch_size": 2}])
def test_resume_refuses_any_setting_that_changes_predictions(baseline, nextqa, rt, tmp_path, change):
    run = tmp_path / "mixed"
    shutil.copytree(baseline["run"], run)
    key = next(iter(change))
    with pytest.raises(Exception, match=rf"written with other settings \({key}: "):
        run_eval(_base_cfg(nextqa, run, resume=True, **change), runtime=rt, progress=False)
    assert _preds(run).read_bytes() == baseline["bytes"]  # nothing appended


def test_limit_then_resume_gives_the_same_records(baseline, nextqa, rt, tmp_path):
    run = tmp_path / "limited"
    out = _preds(run)
    s1 = run_eval(
        _base_cfg(nextqa, run, limit=4, cache=True, cache_dir=baseline["cache"]), runtime=rt, progress=False
    )
    assert s1.processed == 4 and len(read_records(out)) == 4 and s1.metrics["n"] == 4
    assert "--limit 4" in s1.metrics_note
    s2 = run_eval(
        _base_cfg(nextqa, run, resume=True, cache=True, cache_dir=baseline["cache"]),
        runtime=rt,
        progress=False,
    )
    assert (s2.resumed, s2.processed, s2.metrics["n"]) == (4, 2, 6)
    got, want = read_records(out), read_records(baseline["out"])
    assert [r["qid"] for r in got] == [r["qid"] for r in want]
    for a, b in zip(got, want, strict=True):
        assert {k: v for k, v in a.items() if k not in ("letter_probs", "keyframe_scores")} == {
            k: v for k, v in b.items() if k not in ("letter_probs", "keyframe_scores")
        }
        assert a["letter_probs"] == pytest.approx(b["letter_probs"], abs=1e-5)
        assert a["keyframe_scores"] == pytest.approx(b["keyframe_scores"], abs=1e-5)


# ------------------------------------------------------------------------------------------------ bad videos


def test_missing_and_unreadable_videos(nextqa, rt, tmp_path):
    videos = tmp_path / "videos"
    shutil.copytree(nextqa["videos"], videos)
    by_video = Counter(s.video_id for s in nextqa["samples"])
    paired = [v for v, c in by_video.items() if c == 2]
    single = [v for v, c in by_video.items() if c == 1]
    garbage, missing = paired[0], single[0]
    (videos / (nextqa["vmap"][garbage] + ".mp4")).write_bytes(os.urandom(4096))
    (videos / (nextqa["vmap"][missing] + ".mp4")).unlink()
    run = tmp_path / "p"
    out = _preds(run)

    # pre-flight probes every video before any model loads (this model name could not be loaded)
    cfg = _base_cfg(nextqa, run, videos=videos, model="/nonexistent/model")
    with pytest.raises(VideoError, match=r"^1 of 4 videos missing \(first: ") as err:
        run_eval(cfg, progress=False)
    assert f"{missing}.mp4)" in str(err.value) and "--skip-missing" in str(err.value)
    assert "1 unreadable" in str(err.value) and f"{nextqa['vmap'][garbage]}.mp4" in str(err.value)
    args = _args(nextqa, run, "--no-cache")
    args[args.index(nextqa["videos"])] = videos
    r = _cli(*args)
    assert r.exit_code != 0 and "videos missing" in r.output and not out.exists()

    s = run_eval(_base_cfg(nextqa, run, videos=videos, skip_missing=True), runtime=rt, progress=False)
    recs = {r["qid"]: r for r in read_records(out)}
    want = [x.qid for x in nextqa["samples"] if x.video_id not in (missing, garbage)]
    assert sorted(recs) == sorted(want) and s.skipped_missing == 3 and len(s.missing_videos) == 2
    assert (s.errors, s.predictions) == (0, 3)


def test_video_failing_after_the_check_gets_error_records(nextqa, rt, tmp_path, monkeypatch):
    """A video that passed the pre-flight but cannot be decoded in the run: error records, never a substitute."""
    import sevila_tools.eval.runner as runner_mod
    from sevila_tools.eval.datasets import preflight

    monkeypatch.setattr(runner_mod, "preflight", lambda samples, check_readable=True: preflight(samples, False))
    videos = tmp_path / "videos"
    shutil.copytree(nextqa["videos"], videos)
    garbage = [v for v, c in Counter(s.video_id for s in nextqa["samples"]).items() if c == 2][0]
    (videos / (nextqa["vmap"][garbage] + ".mp4")).write_bytes(os.urandom(4096))
    run = tmp_path / "p"
    s = run_eval(_base_cfg(nextqa, run, videos=videos), runtime=rt, progress=False)
    recs = {r["qid"]: r for r in read_records(_preds(run))}
    for x in nextqa["samples"]:
        if x.video_id == garbage:
            assert set(recs[x.qid]) == {"qid", "video", "error"} and recs[x.qid]["video"] == garbage
            assert "cannot decode video" in recs[x.qid]["error"]
        else:
            assert "prediction" in recs[x.qid]
    assert (s.errors, s.errors_this_run, s.predictions) == (2, 2, 4)
    assert s.metrics["n"] == 4 and len(s.metrics["missing"]) == 2 and "no prediction" in s.metrics_note
    preds = load_predictions("nextqa", _preds(run))
    assert sorted(preds.errors) == sorted(x.qid for x in nextqa["samples"] if x.video_id == garbage)


# ------------------------------------------------------------------------------------------------ QVHighlights


def test_qvhighlights_submission(real_data, rt, tmp_path):
    lines = (real_data / "qvhighlights" / "highlight_val_release.jsonl").read_text().splitlines()[:2]
    ann = tmp_path / "qvh.jsonl"
    ann.write_text("\n".join(lines))
    videos = tmp_path / "qvideos"
    for i, line in enumerate(lines):
        make_video(
            videos / f"{json.loads(line)['vid']}.mp4", num_frames=60 + 30 * i, fps=30, width=160, height=120
        )
    assert EvalConfig(dataset="qvhighlights", annotations=ann, out=tmp_path / "x").num_frames == 75
    run = tmp_path / "sub"
    out = _preds(run)
    qvh = ["eval", "--dataset", "qvhighlights", "--annotations", ann, "--videos", videos, "--frames", 12, "--no-cache",
           "--json", *TINY]
    r = _cli(*qvh, "--out", run)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    sub = [json.loads(x) for x in out.read_text().splitlines()]
    samples = load_annotations("qvhighlights", ann, videos)
    assert [e["qid"] for e in sub] == [int(s.qid) for s in samples]
    for entry, s in zip(sub, samples, strict=True):  # independent recomputation of windows and saliency
        fr = sample_frames(s.video, 12)
        loc = prompts_for("query_relevance", s.question, [])[0]
        yes, no = rt.localizer_logits(rt.vit(fr.frames)[None], [loc])
        y, z = yes[0].tolist(), no[0].tolist()
        windows = frames_to_windows(y, z, fr.edges, fr.fps, s.duration, SpanConfig())
        got = entry["pred_relevant_windows"]
        assert [len(w) for w in got] == [3] * len(windows)
        assert [x for w in got for x in w] == pytest.approx([x for w in windows for x in w], abs=2e-4)
        sal = frames_to_saliency(yes_probabilities(y, z).tolist(), fr.timestamps, s.duration)
        assert len(entry["pred_saliency_scores"]) == 75 and entry["pred_saliency_scores"] == pytest.approx(
            sal, abs=2e-4
        )
        assert entry["vid"] == s.video_id and entry["query"] == s.question
    gt = qvh_ground_truth(samples)
    official = json.loads(json.dumps(score_qvhighlights(sub, gt, match_number=False)))
    assert {k: v for k, v in summary["metrics"].items() if k != "frame_accuracy"} == official
    for entry, s in zip(sub, samples, strict=True):  # per-frame decisions for the official frame accuracy
        assert entry["frame_sec"] == pytest.approx(sample_frames(s.video, 12).timestamps, abs=1e-4)
        assert set(entry["frame_yes"]) <= {0, 1} and len(entry["frame_yes"]) == 12
    assert "frame_accuracy" in summary["metrics"]
    assert summary["config"]["span"]["span_threshold"] == 6 and summary["config"]["frames"] == 12

    r = _cli(*qvh, "--out", tmp_path / "one", "--limit", 1)
    assert r.exit_code == 0, r.output
    assert "match_number=False" in json.loads(r.stdout)["metrics_note"]


# ------------------------------------------------------------------------------------------------ 2 processes


@pytest.mark.slow
def test_two_processes_equal_one(nextqa, rt, tmp_path):
    """``accelerate launch`` (torchrun) of the ``sevila`` script with 2 CPU processes over gloo: the merged
    file equals a single-process run.

    Both sides use one BLAS thread per process (thread counts change the last bits of CPU matmuls)."""
    run2 = tmp_path / "two"
    args = _args(nextqa, run2, "--no-cache", "--batch-size", "2", "--json")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        str(BIN / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_cpu_threads_per_process",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(BIN / "sevila"),  # the installed entry point
        *[str(a) for a in args],
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # only rank 0 prints
    assert summary["world_size"] == 2 and summary["processed"] == 6
    assert not list(run2.glob("*.rank*"))  # shards merged and removed

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s1 = run_eval(_base_cfg(nextqa, tmp_path / "one", batch_size=2), runtime=rt, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert _preds(run2).read_bytes() == _preds(tmp_path / "one").read_bytes()
    assert summary["metrics"]["display"] == s1.metrics["display"]
