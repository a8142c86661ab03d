"""Config-first commands: what the generator makes of a pydantic config, ``--config`` + ``KEY=VALUE``, one error
style, and ``sevila eval`` giving the same ``summary.json`` metrics as the Python run it stands for."""

from __future__ import annotations

import csv
import json
import re
from typing import Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field
from typer.main import get_command
from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.cli.args import typer_app
from sevila_tools.cli.generate import Command

TINY = ["--model", "tiny-random", "--device", "cpu"]


class Toy(BaseModel):
    """A config written the house way."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Who.", json_schema_extra={"cli": {"argument": True, "metavar": "WHO"}})
    count: int = Field(2, ge=1, le=3, description="How many.", json_schema_extra={"cli": {"flags": ["--count", "-n"]}})
    loud: bool = Field(False, description="Shout.")
    mode: Literal["a", "b"] = Field("a", description="Which way.")
    tags: list[str] = Field(default_factory=list, description="Labels.", json_schema_extra={"cli": {"metavar": "TAG"}})


def _toy(**options) -> tuple:
    seen = []

    def run(args) -> None:
        """Greet someone."""
        seen.append(args.config())
        args.emit(seen[-1])

    return typer_app(Command("toy", run, models=(Toy,), **options)), seen


def test_flags_help_and_types_come_from_the_config():
    cmd, seen = _toy()
    text = CliRunner().invoke(cmd, ["--help"], terminal_width=80).stdout
    assert "Usage: toy [OPTIONS] WHO" in text and "Greet someone." in text
    for line in ("-n, --count N", "--loud / --no-loud", "--mode a|b", "--tags TAG", "How many.", "[default: 2]"):
        assert line in text, line
    r = CliRunner().invoke(cmd, ["ann", "-n", "3", "--loud", "--tags", "x", "--tags", "y", "--json"])
    assert r.exit_code == 0, r.output
    assert seen[-1] == Toy(name="ann", count=3, loud=True, tags=["x", "y"]) and json.loads(r.stdout)["count"] == 3


@pytest.mark.parametrize(("args", "line"), [
    (["ann", "-n", "9"], "error: --count must be at most 3 (got 9)"),
    (["ann", "-n", "two"], "error: --count must be a whole number (got 'two')"),
    (["ann", "--mode", "c"], "error: --mode must be 'a' or 'b' (got 'c')"),
])
def test_one_error_line_names_the_flag(args, line):
    cmd, _ = _toy()
    r = CliRunner().invoke(cmd, args)
    assert r.exit_code == 2 and r.stderr.strip() == line and "Traceback" not in r.output


def test_config_file_then_flags_then_key_values(tmp_path):
    cmd, seen = _toy(config_file=True)
    conf = tmp_path / "toy.yaml"
    conf.write_text(yaml.safe_dump({"name": "file", "count": 1, "mode": "b", "tags": ["f"]}))
    r = CliRunner().invoke(cmd, ["--config", str(conf), "-n", "3", "name=kv", "loud=true", "--mode", "a"])
    assert r.exit_code == 0, r.output
    assert seen[-1] == Toy(name="kv", count=3, loud=True, mode="a", tags=["f"])
    r = CliRunner().invoke(cmd, ["--config", str(conf), "--count", "2", "count=1"])
    assert r.exit_code == 0 and seen[-1].count == 1 and seen[-1].name == "file"
    r = CliRunner().invoke(cmd, ["--config", str(conf), "colour=red"])
    assert r.exit_code == 2 and r.stderr.startswith("error: unknown setting 'colour' for sevila toy; settings: ")


def _options(command: str) -> list:
    group = get_command(app)
    return [p for p in group.commands[command].params if p.param_type_name == "option"]  # type: ignore[attr-defined]


def test_training_settings_file_then_flags_then_key_values(tmp_path):
    """A training config takes hyper-parameters next to its fields: the file's, then a flag, then KEY=VALUE (or
    --set); --decoder is the model block's and also the stages' decoder."""
    seen = []

    def run(args) -> None:
        """Fine-tune."""
        seen.append(args.config())

    cmd = typer_app(Command("ft", run, models=("sevila_tools.training:FinetuneRunConfig",), config_file=True))
    conf = tmp_path / "ft.yaml"
    conf.write_text("dataset: nextqa\nannotations: a.json\nout: o\nlr: 0.01\nhparams: {epochs: 3, seed: 1}\n"
                    "decoder: pyav\n")
    r = CliRunner().invoke(cmd, ["--config", str(conf), "--lr", "0.02", "--epochs", "2", "--set", "seed=4",
                                 "epochs=1", "init=checkpoint"])
    assert r.exit_code == 0, r.output
    cfg = seen[-1]
    assert cfg.task == "finetune" and cfg.hparams == {"lr": 0.02, "epochs": 1, "seed": 4, "init": "checkpoint"}
    assert cfg.overrides()["decoder"] == "pyav"
    assert CliRunner().invoke(cmd, ["--config", str(conf), "--lr", "0.02", "lr=0.03"]).exit_code == 0
    assert seen[-1].hparams["lr"] == 0.03
    for bad, line in ((["epoch=2"], "did you mean epochs"), (["task=refine"], "task must be 'finetune'"),
                      (["finetune.lr=1"], "STAGE.KEY overrides are for self-refine")):
        r = CliRunner().invoke(cmd, ["--config", str(conf), *bad])
        assert r.exit_code == 2 and line in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_docs_show_the_python_equivalent_of_every_command():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    table = text.split("## Each command and its Python equivalent", 1)[1]
    for command in get_command(app).commands:  # type: ignore[attr-defined]
        assert f"| `sevila {command}" in table, command


@pytest.mark.parametrize("command", sorted(get_command(app).commands))  # type: ignore[attr-defined]
def test_help_at_80_columns_shows_every_flag_whole(command):
    r = CliRunner().invoke(app, [command, "--help"], terminal_width=80)
    assert r.exit_code == 0 and "{" not in r.stdout.split("\n")[0]
    assert "…" not in r.stdout and not re.search(r"\w-\n", r.stdout)  # nothing cut, no word broken at a hyphen
    for opt in _options(command):
        assert all(flag in r.stdout for flag in opt.opts), (command, opt.opts)
        assert opt.metavar is None or opt.metavar == opt.metavar.upper() or "|" in opt.metavar, (command, opt.opts)
    assert all(opt.opts == ["--out", "-O"] or "-O" not in opt.opts for opt in _options(command))  # -O means --out


@pytest.fixture(scope="module")
def toy_nextqa(real_data, tmp_path_factory):
    """Three real NExT-QA questions on two synthetic videos named after their ids."""
    from sevila_tools.synthetic import make_video

    root = tmp_path_factory.mktemp("toyqa")
    rows = list(csv.DictReader(open(real_data / "nextqa" / "val.csv", newline="")))
    two = list(dict.fromkeys(r["video"] for r in rows))[:2]
    chosen = [r for r in rows if r["video"] in two][:3]
    with open(root / "val.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(chosen)
    for i, vid in enumerate(two):
        make_video(root / "videos" / f"{vid}.mp4", num_frames=30 + 15 * i, fps=30, width=96, height=72)
    return root


def test_eval_command_equals_its_python_run(toy_nextqa, tmp_path):
    """``sevila eval --config run.yaml KEY=VALUE -q`` and ``run_eval(EvalConfig(...))`` (docs/cli.md) write the same
    metrics and predictions; ``-q`` silences progress, not the results table."""
    from sevila_tools.eval.runner import EvalConfig, run_eval

    settings = {"dataset": "nextqa", "annotations": str(toy_nextqa / "val.csv"), "videos": str(toy_nextqa / "videos"),
                "frames": 4, "keyframes": 2, "batch_size": 2, "cache": False, "model": "tiny-random", "device": "cpu"}
    conf = tmp_path / "run.yaml"
    conf.write_text(yaml.safe_dump({k: v for k, v in settings.items() if k != "keyframes"}))
    r = CliRunner().invoke(app, ["eval", "--config", str(conf), "--out", str(tmp_path / "cli"), "keyframes=2", "-q"])
    assert r.exit_code == 0, r.output
    assert "sevila eval nextqa" in r.stdout and "Acc_D" in r.stdout  # the results
    assert all(line.startswith("warning: ") for line in r.stderr.splitlines()), r.stderr  # no progress or status
    run_eval(EvalConfig(**settings, out=tmp_path / "py", selector_options={"long_video": "sliding"}), progress=False)
    cli, py = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("cli", "py"))
    assert cli["metrics"] == py["metrics"] and cli["metrics"]["n"] == 3
    assert {k: v for k, v in cli["config"].items() if k != "out"} == {k: v for k, v in py["config"].items() if k != "out"}
    lines = [(tmp_path / d / "predictions.jsonl").read_text().splitlines() for d in ("cli", "py")]
    assert [json.loads(x)["prediction"] for x in lines[0]] == [json.loads(x)["prediction"] for x in lines[1]]
