"""A rich table of a metrics dict (multiple choice or QVHighlights); every value is a percentage."""

from __future__ import annotations

from rich.table import Table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def metrics_table(metrics: dict) -> Table:
    """Rows of a metrics dict from the multiple-choice scorers or the QVHighlights scorer (values in %)."""
    if "brief" in metrics or "frame_accuracy" in metrics:
        table = Table(title="QVHighlights")
        table.add_column("metric")
        table.add_column("value (%)", justify="right")
        for key, value in metrics.get("brief", {}).items():
            table.add_row(key, _fmt(value))
        frames = metrics.get("frame_accuracy")
        if frames:
            table.add_row(f"Frame-Acc ({frames['frames']} frames)", _fmt(frames["accuracy"]))
        return table
    n = metrics.get("n")
    n_total = metrics.get("n_total", n)
    title = f"{metrics.get('dataset', '?')} (n={n}" + (f" of {n_total})" if n_total != n else ")")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value (%)", justify="right")
    display = metrics.get("display") or {"Acc": metrics.get("overall")}
    for name, value in display.items():
        table.add_row(name, _fmt(value))
    return table
