"""``sevila score``: score a prediction file against an annotation file.

The main application registers :func:`score`; the local ``app`` exists so the command can be run on
its own (tests). Bad input raises :class:`sevila_tools.errors.SevilaError` subclasses, which the main app
prints as one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sevila_tools.errors import InputError
from sevila_tools.eval.datasets import DATASETS, check_dataset
from sevila_tools.eval.scorers import metrics_table, score_file


def score(
    dataset: Annotated[str, typer.Argument(help=f"dataset: {', '.join(DATASETS)}")],
    predictions: Annotated[
        Path,
        typer.Option(
            "--predictions", help="predictions: toolkit JSONL, NExT-QA result JSON or QVHighlights submission"
        ),
    ],
    annotations: Annotated[
        Path, typer.Option("--annotations", help="annotations: official raw file or SeViLA JSON list")
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="print one JSON object instead of a table")
    ] = False,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="score the predicted questions only instead of failing")
    ] = False,
) -> None:
    """Score predictions with the official metric of DATASET (multiple-choice accuracy or QVHighlights)."""
    name = check_dataset(dataset)
    for label, path in (("predictions", predictions), ("annotations", annotations)):
        if not path.exists():
            raise InputError(f"{label} file not found: {path}")
    if name == "qvhighlights":  # --allow-missing scores the qids shared with the ground truth
        kwargs: dict[str, bool] = {"match_number": not allow_missing}
    else:
        kwargs = {"allow_missing": allow_missing}
    metrics = score_file(name, predictions, annotations, **kwargs)
    mismatches = metrics.get("answer_mismatches") if isinstance(metrics, dict) else None
    if mismatches and mismatches.get("count"):
        print(
            f"warning: {mismatches['count']} gold answers in {predictions} differ from {annotations} "
            f"(first: {', '.join(mismatches['first'])}); scored against {annotations}",
            file=sys.stderr,
        )
    if metrics.get("missing"):
        print(
            f"warning: {len(metrics['missing'])} questions without prediction were not scored",
            file=sys.stderr,
        )
    if json_output:
        typer.echo(json.dumps(metrics, indent=4))
    else:
        Console().print(metrics_table(metrics))


app = typer.Typer(add_completion=False)


@app.callback()
def _group() -> None:
    """Stand-alone group holding only ``score`` (the main app registers :func:`score` itself)."""


app.command("score")(score)


def register(main_app: typer.Typer) -> None:
    """Add ``sevila score`` to the main application."""
    main_app.command("score")(score)
