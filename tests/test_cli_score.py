"""``sevila score`` through typer's CliRunner (stand-alone app of cli/cmd_score.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sevila_tools.cli.cmd_score import app
from sevila_tools.errors import InputError, SevilaError
from sevila_tools.eval.datasets import load_annotations

runner = CliRunner()


def _one_line_error(result, kind: type[SevilaError] = InputError) -> str:
    assert result.exit_code != 0
    assert isinstance(result.exception, kind), result.exception
    msg = str(result.exception)
    assert msg and "\n" not in msg
    return msg


def test_score_qvhighlights_json_equals_official(shared_data: Path) -> None:
    d = shared_data / "qvhighlights"
    result = runner.invoke(
        app,
        [
            "score",
            "qvhighlights",
            "--predictions",
            str(d / "sample_val_preds.jsonl"),
            "--annotations",
            str(d / "highlight_val_release.jsonl"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    ref = (d / "sample_val_preds_metrics_raw.json").read_text()
    assert json.loads(result.stdout) == json.loads(ref)
    assert result.stdout.strip() == ref


@pytest.fixture(scope="module")
def nextqa_preds(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    csv_path = shared_data / "nextqa" / "val.csv"
    samples = load_annotations("nextqa", csv_path)
    out = tmp_path_factory.mktemp("cli") / "preds.jsonl"
    out.write_text(
        "\n".join(json.dumps({"qid": s.qid, "prediction": 0, "answer": s.answer}) for s in samples)
    )
    return out, csv_path


def test_score_nextqa_table_and_json(nextqa_preds: tuple[Path, Path]) -> None:
    preds, csv_path = nextqa_preds
    args = ["score", "nextqa", "--predictions", str(preds), "--annotations", str(csv_path)]
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "20.28" in table.stdout and "Bef&Aft" in table.stdout and "Acc_C" in table.stdout
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0
    metrics = json.loads(as_json.stdout)
    assert metrics["overall"] == 20.28 and metrics["n"] == 4996 and metrics["dataset"] == "nextqa"
    assert metrics["answer_mismatches"]["count"] == 0


def test_score_bad_inputs(nextqa_preds: tuple[Path, Path], tmp_path: Path) -> None:
    preds, csv_path = nextqa_preds
    missing = runner.invoke(
        app,
        ["score", "nextqa", "--predictions", str(tmp_path / "nope.jsonl"), "--annotations", str(csv_path)],
    )
    assert "not found" in _one_line_error(missing)

    unknown = runner.invoke(
        app, ["score", "kinetics", "--predictions", str(preds), "--annotations", str(csv_path)]
    )
    msg = _one_line_error(unknown)
    assert "kinetics" in msg and "nextqa" in msg and "qvhighlights" in msg

    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(preds.read_text().splitlines()[:-3]))
    short = runner.invoke(
        app, ["score", "nextqa", "--predictions", str(partial), "--annotations", str(csv_path)]
    )
    assert "3 of 4996 questions have no prediction" in _one_line_error(short)
    allowed = runner.invoke(
        app,
        [
            "score",
            "nextqa",
            "--predictions",
            str(partial),
            "--annotations",
            str(csv_path),
            "--allow-missing",
            "--json",
        ],
    )
    assert allowed.exit_code == 0 and json.loads(allowed.stdout)["n"] == 4993

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"qid": "x", "prediction": 1}\n{not json')
    bad = runner.invoke(
        app, ["score", "nextqa", "--predictions", str(broken), "--annotations", str(csv_path)]
    )
    assert f"{broken}:2" in _one_line_error(bad)


def test_score_qvhighlights_mismatched_qids(shared_data: Path, tmp_path: Path) -> None:
    d = shared_data / "qvhighlights"
    sub = tmp_path / "sub.jsonl"
    sub.write_text("\n".join((d / "sample_val_preds.jsonl").read_text().splitlines()[:100]))
    res = runner.invoke(
        app,
        [
            "score",
            "qvhighlights",
            "--predictions",
            str(sub),
            "--annotations",
            str(d / "highlight_val_release.jsonl"),
        ],
    )
    assert "differ" in _one_line_error(res)
    ok = runner.invoke(
        app,
        [
            "score",
            "qvhighlights",
            "--predictions",
            str(sub),
            "--annotations",
            str(d / "highlight_val_release.jsonl"),
            "--allow-missing",
            "--json",
        ],
    )
    assert ok.exit_code == 0 and "brief" in json.loads(ok.stdout)
