"""The one rich progress bar used by long runs (evaluation, training, benchmarks): always on stderr."""

from __future__ import annotations

from typing import Any


def make_progress(enabled: bool = True, unit: str = "it", info: bool = False, console: Any = None) -> Any:
    """Description, bar, done/total, optional ``info`` field (e.g. loss, lr), rate in ``unit``/s, elapsed, ETA.

    Tasks must be added with ``info=""`` when ``info`` is True."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            text = f"-- {unit}/s" if speed is None else f"{speed:.2f} {unit}/s"
            return Text(text, style="progress.data.speed")

    columns: list[Any] = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    columns += [RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=console or Console(stderr=True), disable=not enabled)
