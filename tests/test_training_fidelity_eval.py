"""Evaluation settings the paper and the official code fix: the oracle on 4 uniform frames with the official
``avg_acc``, and QVHighlights frame accuracy on the same, unrounded frames in training validation and eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.register_assert_rewrite("training_support")
from training_support import OPTIONS, QUESTION, TINY, cli, fresh_runtime  # noqa: E402

from sevila_tools.eval.datasets import load_annotations  # noqa: E402
from sevila_tools.eval.scorers import frame_accuracy  # noqa: E402
from sevila_tools.eval.scorers.frames import single_frame_accuracy  # noqa: E402
from sevila_tools.prompts import answerer_prompt  # noqa: E402
from sevila_tools.synthetic import make_scene_video  # noqa: E402
from sevila_tools.training import LocalAccelerator, resolve_config  # noqa: E402
from sevila_tools.training.frozen import build_pipeline  # noqa: E402
from sevila_tools.training.runs import progress  # noqa: E402
from sevila_tools.training.validation import frame_validation  # noqa: E402
from sevila_tools.video import sample_frames  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run faster on one thread


def test_oracle_answers_4_uniform_frames_and_reports_avg_acc(train_data, tmp_path):
    """``sevila eval -s oracle`` with --frames 32 decodes the paper's 4 uniform frames (official frameqa), is
    right iff one of them alone is right, and reports avg_acc = right (question, frame) pairs / all pairs."""
    out = tmp_path / "o"
    res = json.loads(cli("eval", "-d", "nextqa", "--annotations", str(train_data / "ann.json"), "--videos",
                         str(train_data / "videos"), *TINY, "-s", "oracle", "--frames", "32", "--out", str(out),
                         "--no-cache", "--json").stdout)
    assert res["config"]["frames_decoded_per_video"] == 4 and res["config"]["frames"] == 32
    records = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    rt = fresh_runtime()
    right = pairs = correct = 0
    for rec in records:  # independent: 4 uniform frames, each answered alone (faithful decoding)
        fr = sample_frames(str(train_data / "videos" / f"{rec['video']}.mp4"), 4)
        preds = rt.frame_answers(rt.vit(fr.frames)[None], [answerer_prompt(QUESTION, OPTIONS)], 3, "faithful").predictions
        assert rec["frame_predictions"] == preds and len(rec["keyframe_idx"]) == 4
        assert sorted(rec["keyframe_idx"]) == rec["keyframe_idx"] and set(rec["keyframe_idx"]) <= set(fr.indices)
        right += rec["answer"] in preds
        pairs += len(preds)
        correct += sum(p == rec["answer"] for p in preds)
    assert res["metrics"]["headline"]["value"] == pytest.approx(100 * right / len(records), abs=0.01)
    assert res["metrics"]["single_frame"]["avg_acc"] == float(f"{100 * correct / pairs:.2f}")
    assert single_frame_accuracy([{"answer": 1, "frame_predictions": [1, 0, 1, 2]}])["avg_acc"] == 50.0
    other = json.loads(cli("eval", "-d", "nextqa", "--annotations", str(train_data / "ann.json"), "--videos",
                           str(train_data / "videos"), *TINY, "-s", "oracle", "--frames", "8",
                           "--selector-option", "oracle_frames=0",
                           "--out", str(tmp_path / "o8"), "--no-cache", "--json").stdout)
    assert other["config"]["frames_decoded_per_video"] == 8


@pytest.fixture(scope="module")
def qvh(train_data, tmp_path_factory) -> Path:
    """Two queries: one on a 60-frame video, one on a 6-frame video (so 16 frames are padded duplicates)."""
    d = tmp_path_factory.mktemp("qvh")
    make_scene_video(d / "short.mp4", [(3, (220, 30, 30)), (3, (30, 30, 220))], fps=30)
    (d / "v0.mp4").symlink_to(train_data / "videos" / "v0.mp4")
    hl = {"duration": 2, "relevant_clip_ids": [0], "saliency_scores": [[4, 3, 2]]}
    lines = [{"qid": 1, "query": "a red square", "vid": "v0", "relevant_windows": [[0, 0.5]], **hl},
             {"qid": 2, "query": "a red square", "vid": "short", "relevant_windows": [[0, 0.0667]], **hl}]
    (d / "qvh.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    return d


def test_qvh_validation_and_eval_score_the_same_unrounded_frames(qvh, tmp_path):
    out = tmp_path / "e"
    res = json.loads(cli("eval", "-d", "qvhighlights", "--annotations", str(qvh / "qvh.jsonl"), "--videos", str(qvh),
                         *TINY, "--frames", "16", "--out", str(out), "--no-cache", "--json").stdout)
    records = {r["qid"]: r for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    for qid, video in ((1, "v0.mp4"), (2, "short.mp4")):
        fr = sample_frames(str(qvh / video), 16)
        n = len(fr.edges) - 1  # padded duplicates of a short video are dropped
        assert records[qid]["frame_sec"] == [i / fr.fps for i in fr.indices[:n]]  # exact, not rounded
    assert len(records[2]["frame_sec"]) == 6 and len(records[1]["frame_sec"]) == 16
    cfg = resolve_config("pretrain", "qvhighlights", overrides={"val_frames": 16})
    samples = load_annotations("qvhighlights", qvh / "qvh.jsonl", videos_root=qvh)
    with progress(False) as bar:
        val = frame_validation(build_pipeline(fresh_runtime(), cfg.prompts, cfg.decoder), samples, cfg,
                               LocalAccelerator("cpu"), bar)
    evaluated = res["metrics"]["frame_accuracy"]
    assert val["frames"] == evaluated["frames"] == 22
    assert val["value"] == evaluated["accuracy"]
    truth = [{"qid": 1, "relevant_windows": [[0, 0.5]]}, {"qid": 2, "relevant_windows": [[0, 0.0667]]}]
    assert frame_accuracy(list(records.values()), truth)["accuracy"] == evaluated["accuracy"]


def test_frame_labels_use_exact_times():
    """A frame 1/30 s into the video is after a window ending at 0.0333 s; its 4-decimal rounding is not."""
    truth = [{"qid": 1, "relevant_windows": [[0, 0.0333]]}]
    exact = frame_accuracy([{"qid": 1, "frame_sec": [0.0, 1 / 30], "frame_yes": [1, 0]}], truth)
    rounded = frame_accuracy([{"qid": 1, "frame_sec": [0.0, round(1 / 30, 4)], "frame_yes": [1, 0]}], truth)
    assert (exact["accuracy"], exact["positive_frames"]) == (100.0, 1)
    assert (rounded["accuracy"], rounded["positive_frames"]) == (50.0, 2)
