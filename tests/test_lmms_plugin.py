"""The lmms-eval plugin end to end in its own environment (``make lmms`` builds ``.venv-lmms``; ``make test``
builds it first, and this test fails, never skips, when it is missing).

Claims: ``--model sevila`` answers a local NExT-QA-shaped task exactly as ``sevila eval`` does; ``--model
sevila_keyframes`` around lmms-eval's built-in ``gemma3`` (a tiny random local checkpoint) makes ``gemma3`` read
exactly k frames per question, the selected frames at their original times, whether selected live or read from
``frames.jsonl``; bad inputs end the run with one ``error:`` line and a non-zero status."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LMMS_PYTHON = REPO / ".venv-lmms" / "bin" / "python"
K = 3
pytestmark = pytest.mark.lmms


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    assert LMMS_PYTHON.exists(), f"{LMMS_PYTHON} is missing: run `make lmms` (make test builds it)"
    work = tmp_path_factory.mktemp("lmms")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(LMMS_PYTHON), str(REPO / "tests" / "lmms" / "e2e.py"), str(work)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((work / "report.json").read_text())


def _ok(run: dict) -> dict:
    assert run["rc"] == 0, run["stderr_tail"]
    assert run["evaluation_errors"] == 0 and run["visual_errors"] == 0, run["stdout_tail"]
    return run


def test_sevila_model_answers_as_sevila_eval(report):
    run = _ok(report["runs"]["sevila"])
    preds = report["reference"]["predictions"]
    letters = {s["doc_id"]: s["filtered_resps"] for s in run["samples"]}
    assert [letters[i] for i in range(len(preds))] == ["ABCDE"[p["prediction"]] for p in preds]
    accuracy = sum(p["prediction"] == p["answer"] for p in preds) / len(preds)
    assert run["results"]["sevila_nextqa"]["exact_match,none"] == pytest.approx(accuracy)


def _check_frames_reached_gemma(run: dict, reference: list[dict]) -> None:
    reads = run["record"]
    assert len(reads) == len(reference)  # gemma3 read one clip per question, nothing else
    by_doc = {int(Path(r["path"]).stem.rsplit("_", 1)[-1]): r for r in reads}  # clips are TASK_SPLIT_DOCID.mp4
    for i, ref in enumerate(reference):
        assert by_doc[i]["counters"] == ref["native_indices"] and len(by_doc[i]["counters"]) == K
        assert by_doc[i]["times"] == pytest.approx(ref["timestamps_s"], abs=1e-6)


def test_keyframes_wrapper_hands_gemma3_exactly_the_selected_frames(report):
    run = _ok(report["runs"]["keyframes_live"])
    reference = report["reference"]["frames"]
    _check_frames_reached_gemma(run, reference)
    assert [(h["question_id"], h["native_indices"]) for h in report["handed"]] == [
        (r["question_id"], r["native_indices"]) for r in reference]
    assert len(run["samples"]) == len(reference) and "sevila_nextqa" in run["results"]


def test_keyframes_wrapper_reads_a_frames_file(report):
    run = _ok(report["runs"]["keyframes_file"])
    _check_frames_reached_gemma(run, report["reference"]["frames"])


@pytest.mark.parametrize(("name", "message"), [
    ("unknown_inner", "error: lmms-eval knows no model 'no_such_model' (inner=no_such_model)"),
    ("missing_question", "has no frames for 1 of 3 questions (first: v1_1)"),
])
def test_bad_inputs_end_the_run_with_one_line(report, name, message):
    run = report["runs"][name]
    assert run["rc"] == 2 and "Traceback" not in run["stderr_tail"]
    lines = [x for x in run["stderr_tail"].splitlines() if x.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "record" not in run  # no frame reached the inner model
