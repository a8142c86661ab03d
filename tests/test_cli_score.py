"""``sevila score`` through typer's CliRunner: output and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.cli.common import STATE
from sevila_tools.errors import InputError
from sevila_tools.eval.datasets import get_dataset

runner = CliRunner()


def _error_line(result) -> str:
    """The command failed with exit code 2 and exactly one ``error: ...`` line on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def qvh(real_data: Path) -> Path:
    return real_data / "qvhighlights"


def test_score_qvhighlights_json_equals_official(qvh: Path) -> None:
    args = ["score", "-d", "qvhighlights", "-p", qvh / "sample_val_preds.jsonl"]
    result = runner.invoke(app, [*map(str, args), "-a", str(qvh / "highlight_val_release.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    ref = (qvh / "sample_val_preds_metrics_raw.json").read_text()
    assert result.stdout.strip() == ref and result.stderr == ""


def test_score_reads_gzip_files_and_old_positional_form(data_dir: Path) -> None:
    d = data_dir / "qvhighlights"
    result = runner.invoke(
        app,
        [
            "score",
            "qvhighlights",
            "--predictions",
            str(d / "sample_val_preds.jsonl.gz"),
            "--annotations",
            str(d / "highlight_val_release.jsonl.gz"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "value (%)" in result.stdout and "MR-full-mAP" in result.stdout and "32.20" in result.stdout


@pytest.fixture(scope="module")
def nextqa_preds(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    csv_path = real_data / "nextqa" / "val.csv"
    samples = get_dataset("nextqa").load(csv_path)
    out = tmp_path_factory.mktemp("cli") / "preds.jsonl"
    out.write_text(
        "\n".join(json.dumps({"qid": s.qid, "prediction": 0, "answer": s.answer}) for s in samples)
    )
    return out, csv_path


def _nextqa(preds: Path, csv_path: Path, *extra: str):
    return runner.invoke(app, ["score", "--dataset", "nextqa", "-p", str(preds), "-a", str(csv_path), *extra])


def test_score_nextqa_table_json_and_quiet(nextqa_preds: tuple[Path, Path], tmp_path: Path) -> None:
    preds, csv_path = nextqa_preds
    table = _nextqa(preds, csv_path)
    assert table.exit_code == 0, table.output
    assert "20.28" in table.stdout and "Bef&Aft" in table.stdout and "value (%)" in table.stdout
    metrics = json.loads(_nextqa(preds, csv_path, "--json").stdout)
    assert metrics["overall"] == 20.28 and metrics["n"] == 4996 and metrics["unit"] == "percent"
    assert metrics["answer_mismatches"]["count"] == 0

    lines = preds.read_text().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "answer": (first["answer"] + 1) % 5})
    changed = tmp_path / "changed.jsonl"
    changed.write_text("\n".join(lines))
    loud = _nextqa(changed, csv_path, "--json")
    assert (
        loud.exit_code == 0
        and loud.stderr.startswith("warning: 1 gold answers")
        and first["qid"] in loud.stderr
    )
    quiet = _nextqa(changed, csv_path, "--json", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["overall"] == 20.28


def test_error_missing_file(nextqa_preds: tuple[Path, Path], tmp_path: Path) -> None:
    _, csv_path = nextqa_preds
    line = _error_line(_nextqa(tmp_path / "nope.jsonl", csv_path))
    assert line == f"error: predictions file not found: {tmp_path / 'nope.jsonl'}"


def test_error_malformed_json_line(nextqa_preds: tuple[Path, Path], tmp_path: Path) -> None:
    _, csv_path = nextqa_preds
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"qid": "x", "prediction": 1}\n{not json')
    assert f"{broken}:2: invalid JSON line" in _error_line(_nextqa(broken, csv_path))


def test_error_csv_without_columns(nextqa_preds: tuple[Path, Path], tmp_path: Path) -> None:
    preds, _ = nextqa_preds
    bad_csv = tmp_path / "val.csv"
    bad_csv.write_text("video,question,answer,qid\n1,q,0,0\n")
    line = _error_line(_nextqa(preds, bad_csv))
    assert f"{bad_csv}:1: NExT-QA csv header lacks column(s) type, a0, a1, a2, a3, a4" in line


def test_error_unknown_and_missing_dataset(nextqa_preds: tuple[Path, Path]) -> None:
    preds, csv_path = nextqa_preds
    unknown = runner.invoke(app, ["score", "-d", "kinetics", "-p", str(preds), "-a", str(csv_path)])
    line = _error_line(unknown)
    assert "'kinetics'" in line and all(name in line for name in ("nextqa", "star", "vlep", "qvhighlights"))
    none = runner.invoke(app, ["score", "-p", str(preds), "-a", str(csv_path)])
    assert _error_line(none).startswith("error: missing --dataset NAME")
    clash = runner.invoke(app, ["score", "star", "-d", "nextqa", "-p", str(preds), "-a", str(csv_path)])
    assert "two datasets" in _error_line(clash)


def test_error_questions_without_prediction(nextqa_preds: tuple[Path, Path], tmp_path: Path) -> None:
    preds, csv_path = nextqa_preds
    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(preds.read_text().splitlines()[:-3]))
    line = _error_line(_nextqa(partial, csv_path))
    assert line.startswith("error: 3 of 4996 questions have no prediction (first: ")
    allowed = _nextqa(partial, csv_path, "--allow-missing", "--json")
    assert allowed.exit_code == 0 and json.loads(allowed.stdout)["n"] == 4993
    assert "warning: 3 questions without prediction were not scored" in allowed.stderr


def test_error_wrong_annotation_format(nextqa_preds: tuple[Path, Path], qvh: Path) -> None:
    preds, _ = nextqa_preds
    result = _nextqa(preds, qvh / "highlight_val_release.jsonl")
    assert "not a nextqa annotation file (it looks like a qvhighlights file)" in _error_line(result)


def test_debug_shows_the_exception(nextqa_preds: tuple[Path, Path], tmp_path: Path) -> None:
    _, csv_path = nextqa_preds
    try:
        result = runner.invoke(
            app, ["--debug", "score", "-d", "nextqa", "-p", str(tmp_path / "x"), "-a", str(csv_path)]
        )
    finally:
        STATE.debug = False
    assert result.exit_code != 0 and isinstance(result.exception, InputError)


def test_qvhighlights_mismatched_qids(qvh: Path, tmp_path: Path) -> None:
    sub = tmp_path / "sub.jsonl"
    sub.write_text("\n".join((qvh / "sample_val_preds.jsonl").read_text().splitlines()[:100]))
    args = ["score", "-d", "qvhighlights", "-p", str(sub), "-a", str(qvh / "highlight_val_release.jsonl")]
    assert "qids of submission and ground truth differ: 1450 GT qids unpredicted" in _error_line(
        runner.invoke(app, args)
    )
    ok = runner.invoke(app, [*args, "--allow-missing", "--json"])
    assert ok.exit_code == 0 and "brief" in json.loads(ok.stdout)


def test_qvhighlights_frame_accuracy_reported(qvh: Path, tmp_path: Path) -> None:
    gt = [json.loads(x) for x in (qvh / "highlight_val_release.jsonl").read_text().splitlines()[:3]]
    ann = tmp_path / "gt.jsonl"
    ann.write_text("\n".join(json.dumps(g) for g in gt))
    lines = []
    for g in gt:
        times = [2.0 * j + 1.0 for j in range(75)]
        yes = [1] * 75  # always "yes": accuracy = share of frames inside a window
        lines.append(
            {"qid": g["qid"], "pred_relevant_windows": [[0, 10, 0.5]], "frame_sec": times, "frame_yes": yes}
        )
    sub = tmp_path / "sub.jsonl"
    sub.write_text("\n".join(json.dumps(x) for x in lines))
    inside = sum(
        any(a <= 2.0 * j + 1.0 <= b for a, b in g["relevant_windows"]) for g in gt for j in range(75)
    )
    res = runner.invoke(app, ["score", "-d", "qvhighlights", "-p", str(sub), "-a", str(ann), "--json"])
    assert res.exit_code == 0, res.output
    frames = json.loads(res.stdout)["frame_accuracy"]
    assert frames["frames"] == 225 and frames["accuracy"] == float(f"{100 * inside / 225:.2f}")
    table = runner.invoke(app, ["score", "-d", "qvhighlights", "-p", str(sub), "-a", str(ann)])
    assert "Frame-Acc (225 frames)" in table.stdout
