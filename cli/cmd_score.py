"""``sevila score``: score a prediction file against an annotation file with the dataset's official metric.

The main application registers :func:`score`; the local ``app`` runs the command on its own (tests).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sevila_tools.cli.common import STATE, existing_file, guarded
from sevila_tools.errors import InputError
from sevila_tools.eval.datasets import (
    DatasetSpec,
    Sample,
    available_datasets,
    count_empty_windows,
    get_dataset,
)
from sevila_tools.eval.scorers import load_predictions, metrics_table

DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", "-d", help=f"Dataset: {', '.join(available_datasets())}.", show_default=False),
]


def _pick_dataset(option: str | None, positional: str | None) -> DatasetSpec:
    if option and positional and option.strip().lower() != positional.strip().lower():
        raise InputError(f"two datasets given: --dataset {option} and {positional}")
    name = option or positional
    if not name:
        raise InputError(f"missing --dataset NAME ({', '.join(available_datasets())})")
    return get_dataset(name)


def _required(path: Path | None, flag: str, what: str) -> Path:
    if path is None:
        raise InputError(f"missing {flag} FILE")
    return existing_file(path, what)


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def _warnings(metrics: dict[str, Any], samples: list[Sample], predictions: Path, annotations: Path) -> None:
    mismatches = metrics.get("answer_mismatches")
    if mismatches and mismatches.get("count"):
        _warn(
            f"{mismatches['count']} gold answers in {predictions} differ from {annotations} "
            f"(first: {', '.join(mismatches['first'])}); scored against {annotations}"
        )
    if metrics.get("errors"):
        _warn(f"{metrics['errors']} prediction records carry an error and count as missing")
    if metrics.get("missing"):
        _warn(f"{len(metrics['missing'])} questions without prediction were not scored")
    empty = count_empty_windows(samples)
    if empty:
        _warn(
            f"{empty} questions have an empty or reversed window (end <= start); they are scored like the others"
        )


@guarded
def score(
    dataset_arg: Annotated[
        str | None,
        typer.Argument(metavar="[DATASET]", help="Same as --dataset (older form).", show_default=False),
    ] = None,
    dataset: DatasetOpt = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            "-p",
            help="Toolkit JSONL, NExT-QA result JSON or QVHighlights submission.",
            show_default=False,
        ),
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations", "-a", help="Official release file or SeViLA JSON list.", show_default=False
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No warnings on stderr.")] = False,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Score the predicted questions only instead of failing.")
    ] = False,
) -> None:
    """Score predictions with the official metric of the dataset; accuracies are percentages (2 decimals)."""
    spec = _pick_dataset(dataset, dataset_arg)
    pred_path = _required(predictions, "--predictions", "predictions file")
    ann_path = _required(annotations, "--annotations", "annotations file")
    samples = spec.load(ann_path)
    metrics = spec.score(load_predictions(spec.name, pred_path), samples, allow_missing=allow_missing)
    if not quiet:
        _warnings(metrics, samples, pred_path, ann_path)
    if json_output:
        typer.echo(json.dumps(metrics, indent=4))
    else:
        Console().print(metrics_table(metrics))


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _group(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Stand-alone group holding only ``score`` (the main app registers :func:`score` itself)."""
    if debug:
        STATE.debug = True


app.command("score")(score)


def register(main_app: typer.Typer) -> None:
    """Add ``sevila score`` to the main application."""
    main_app.command("score")(score)
