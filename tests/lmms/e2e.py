"""End to end in ``.venv-lmms``: the lmms-eval plugin on a NExT-QA-shaped local task, offline, on CPU.

``python tests/lmms/e2e.py WORK`` writes ``WORK/report.json`` (``tests/test_lmms_plugin.py`` asserts on it):
the reference keyframes (``run_select``) and answers (``run_eval``) computed here, then ``python -m lmms_eval``
runs of ``sevila``, of ``sevila_keyframes`` around lmms-eval's built-in ``gemma3`` (a tiny random local
checkpoint; selecting live, then reading ``frames.jsonl``), with what reached ``gemma3``, and two bad inputs.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = [("v1", 0, "what is the square doing", 1), ("v2", 0, "where does it go", 2), ("v1", 1, "why does it stop", 0)]
K, N = 3, 8


def make_data(work: Path) -> dict[str, Path]:
    from sevila_tools.synthetic import make_video

    videos = work / "videos"
    make_video(videos / "v1.mp4", num_frames=60, fps=30, width=160, height=120)
    make_video(videos / "v2.mp4", num_frames=45, fps=30, width=160, height=120)
    ann = work / "val.csv"
    with open(ann, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
                    "a0", "a1", "a2", "a3", "a4"])
        for video, qid, question, answer in ROWS:
            w.writerow([video, 60, 160, 120, question, answer, qid, "CW", "left", "right", "up", "down", "still"])
    return {"videos": videos, "ann": ann}


def references(work: Path, data: dict[str, Path]) -> dict:
    """Keyframes and answers of the toolkit itself, one BLAS thread (as the lmms-eval runs below)."""
    import torch

    from sevila_tools.eval.runner import read_records, run_eval
    from sevila_tools.eval.select import run_select

    torch.set_num_threads(1)
    cfg = {"dataset": "nextqa", "annotations": data["ann"], "videos": data["videos"], "frames": N, "keyframes": K,
           "model": "tiny-random", "device": "cpu", "cache": False, "batch_size": 1}
    run_select({**cfg, "out": work / "select"}, progress=False)
    run_eval({**cfg, "out": work / "eval"}, progress=False)
    frames = [json.loads(x) for x in (work / "select" / "frames.jsonl").read_text().splitlines()]
    preds = read_records(work / "eval" / "predictions.jsonl")
    return {"frames": frames, "frames_file": str(work / "select" / "frames.jsonl"),
            "predictions": [{"qid": p["qid"], "prediction": p["prediction"], "answer": p["answer"],
                             "keyframe_idx": p["keyframe_idx"]} for p in preds]}


def lmms(work: Path, name: str, args: list[str], env: dict[str, str], record: bool = False) -> dict:
    """One lmms-eval command line (through the recording launcher when ``record``)."""
    out = work / f"out_{name}"
    rec = work / f"record_{name}.jsonl"
    head = [sys.executable, str(HERE / "launch.py"), str(rec)] if record else [sys.executable, "-m", "lmms_eval"]
    cmd = [*head, *args, "--output_path", str(out), "--log_samples", "--verbosity", "DEBUG", "--batch_size", "1"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    logs = proc.stdout + proc.stderr
    run = {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1), "stderr_tail": proc.stderr[-3000:],
           "stdout_tail": proc.stdout[-1500:], "evaluation_errors": logs.count("Error during evaluation"),
           "visual_errors": logs.count("Failed to process visual")}  # gemma3 logs these and answers without images
    samples = sorted(out.rglob("*_samples_*.jsonl"))
    results = sorted(out.rglob("*_results.json"))
    if samples:
        run["samples"] = [json.loads(x) for x in samples[-1].read_text().splitlines()]
    if results:
        run["results"] = json.loads(results[-1].read_text())["results"]
    if rec.exists():
        run["record"] = [json.loads(x) for x in rec.read_text().splitlines()]
    return run


def main(work: Path) -> None:
    from sevila_tools.lmms_eval import task_dir

    sys.path.insert(0, str(HERE))
    from tiny_gemma import make_tiny_gemma3

    work.mkdir(parents=True, exist_ok=True)
    data = make_data(work)
    report: dict = {"reference": references(work, data)}
    gemma = make_tiny_gemma3(work / "gemma3")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "HF_HOME": str(work / "hf"), "SEVILA_NEXTQA_ANNOTATIONS": str(data["ann"]),
           "SEVILA_NEXTQA_VIDEOS": str(data["videos"])}
    task = ["--tasks", "sevila_nextqa", "--include_path", str(task_dir())]
    inner = f"inner=gemma3,inner_args=pretrained={gemma};device=cpu;device_map=cpu;max_num_frames=8,k={K}"
    frames_file = report["reference"]["frames_file"]
    partial = work / "partial.jsonl"
    partial.write_text("".join(x + "\n" for x in Path(frames_file).read_text().splitlines()[:2]))
    report["runs"] = {
        "sevila": lmms(work, "sevila", ["--model", "sevila", "--model_args",
                                        f"model=tiny-random,device=cpu,frames={N},keyframes={K}", *task], env),
        "keyframes_live": lmms(work, "keyframes_live", [
            "--model", "sevila_keyframes", "--model_args",
            f"model=tiny-random,device=cpu,frames={N},{inner},save_frames={work / 'handed.jsonl'},"
            f"clip_dir={work / 'clips'}", *task], env, record=True),
        "keyframes_file": lmms(work, "keyframes_file", [
            "--model", "sevila_keyframes", "--model_args", f"frames_file={frames_file},{inner}", *task], env,
            record=True),
        "unknown_inner": lmms(work, "unknown_inner", [
            "--model", "sevila_keyframes", "--model_args", f"inner=no_such_model,frames_file={frames_file}", *task],
            env),
        "missing_question": lmms(work, "missing_question", [
            "--model", "sevila_keyframes", "--model_args", f"frames_file={partial},{inner}", *task], env),
    }
    handed = work / "handed.jsonl"
    report["handed"] = [json.loads(x) for x in handed.read_text().splitlines()] if handed.exists() else []
    (work / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
