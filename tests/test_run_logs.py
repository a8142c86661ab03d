"""``log.txt`` in the run folders of ``sevila eval`` and ``sevila ablate``: written on every invocation, with the
package's warnings, and a last line that says how the run ended (finished, interrupted, failed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sevila_tools.eval.ablate import run_ablation
from sevila_tools.eval.runner import EvalRun, run_eval
from sevila_tools.loading import load_runtime
from sevila_tools.synthetic import make_video

STAMP = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} "
LONG = "why " + "does the small red square keep moving across the frame " * 8 + "?"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two short videos and three NExT-QA questions in SeViLA's JSON layout."""
    d = tmp_path_factory.mktemp("runlog")
    for vid in ("v0", "v1"):
        make_video(d / "videos" / f"{vid}.mp4", num_frames=20, fps=10, width=96, height=72)
    recs = [{"video": v, "qid": f"CW_q{i}", "question": "what moves?", "a0": "a square.", "a1": "a dog.",
             "a2": "nothing.", "answer": 0} for i, v in enumerate(["v0", "v1", "v0"])]
    (d / "ann.json").write_text(json.dumps(recs))
    recs[1]["question"] = LONG  # longer than the 77-token limit
    (d / "long.json").write_text(json.dumps(recs))
    return d


def _cfg(data: Path, out: Path, ann: str = "ann.json", **kw) -> dict:
    return {"dataset": "nextqa", "annotations": data / ann, "videos": data / "videos", "out": out, "frames": 4,
            "keyframes": 2, "batch_size": 1, "model": "tiny-random", "device": "cpu", "cache": False, **kw}


def _lines(path: Path) -> list[str]:
    text = path.read_text()
    assert all(re.match(STAMP, line) for line in text.splitlines()), text
    return [line[20:] for line in text.splitlines()]


def test_a_clean_run_writes_its_log(data, tmp_path):
    out = tmp_path / "run"
    s = run_eval(_cfg(data, out), runtime=load_runtime("tiny-random", device="cpu"), progress=False)
    lines = _lines(out / "log.txt")
    assert lines[0] == (f"eval nextqa: {data / 'ann.json'} (videos {data / 'videos'}), selector localizer, 4 frames, "
                        "2 keyframes, model tiny-random")
    head = s.metrics["headline"]
    assert re.fullmatch(rf"finished in [\d.]+ s: 3 processed, 0 resumed, 0 errors; overall {head['value']:.2f}",
                        lines[-1])
    assert len(lines) == 2 and oct((out / "log.txt").stat().st_mode & 0o777) == oct(0o644)


def test_warnings_and_a_refused_second_invocation_are_logged(data, tmp_path):
    out = tmp_path / "run"
    run_eval(_cfg(data, out, "long.json"), runtime=load_runtime("tiny-random", device="cpu"), progress=False)
    lines = _lines(out / "log.txt")
    warnings = [x for x in lines if x.startswith("warning: ")]  # the runtime's logger, once per run
    assert len(warnings) == 1 and warnings[0].startswith("warning: text truncated to 77 T5 tokens (shown once; ")
    assert LONG[:40] in warnings[0]
    with pytest.raises(Exception, match="already holds predictions"):
        run_eval(_cfg(data, out, "long.json"), progress=False)
    again = _lines(out / "log.txt")
    assert again[: len(lines)] == lines and again[len(lines)].startswith("eval nextqa: ")
    assert again[-1] == f"failed: {out} already holds predictions; pass --resume to continue or --overwrite"


def test_ctrl_c_is_logged_with_the_resume_hint(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = []
    real = EvalRun._predict_batch

    def interrupt_second(self, items):
        calls.append(len(items))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, items)

    monkeypatch.setattr(EvalRun, "_predict_batch", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        run_eval(_cfg(data, out), runtime=load_runtime("tiny-random", device="cpu"), progress=False)
    assert _lines(out / "log.txt")[-1] == "interrupted after 1 of 3 samples: rerun with --resume to continue"
    monkeypatch.undo()
    s = run_eval(_cfg(data, out, resume=True), runtime=load_runtime("tiny-random", device="cpu"), progress=False)
    lines = _lines(out / "log.txt")
    assert lines[-2:-1] == ["resume: 1 of 3 samples already in " + str(out / "predictions.jsonl")]
    assert lines[-1].startswith("finished in ") and s.resumed == 1


def test_ablate_keeps_a_log_beside_its_results(data, tmp_path):
    out = tmp_path / "abl"
    cfg = {k: v for k, v in _cfg(data, out).items() if k not in ("frames", "keyframes", "batch_size")}
    res = run_ablation({**cfg, "selectors": ["uniform"], "grid": [(4, 2)]}, progress=False,
                       runtime=load_runtime("tiny-random", device="cpu"))
    lines = _lines(out / "log.txt")
    assert lines[0] == f"ablate nextqa: {data / 'ann.json'} (videos {data / 'videos'}), model tiny-random"
    assert lines[1] == "[1/1] uniform 2→2 concat"
    assert lines[-1] == f"finished in {res.elapsed_s:.1f} s: 1 settings run, 0 resumed; results in {out}/results.md"
    setting_log = _lines(Path(res.rows[0].summary_file).parent / "log.txt")
    assert setting_log[0].startswith("eval nextqa: ") and setting_log[-1].startswith("finished in ")
