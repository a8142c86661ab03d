"""Ablation results: the row/result models and their Markdown, CSV, PNG and terminal renderings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field


class AblationRow(BaseModel):
    """One setting of the ablation and its scores."""

    setting: str = Field(description="Setting id (also the run folder's name).")
    selector: str
    frames: int = Field(description="Candidate frames decoded (a selector with its own rule may use fewer).")
    keyframes: int
    answerer: str
    grid_entries: list[str] = Field(description="Grid entries (FRAMES:KEYFRAMES) that map to this row.")
    own_rule: bool = Field(False, description="The selector decides how many frames to decode (marked ¹).")
    status: Literal["run", "resumed"] = Field(description="run = computed (at least partly) by this call.")
    display: dict[str, float | None] = Field(default_factory=dict, description="The table's metric columns.")
    headline: float | None = Field(None, description="The dataset's headline metric (percent).")
    n: int = Field(0, description="Scored questions.")
    n_total: int = Field(0, description="Selected questions.")
    predictions: int = 0
    errors: int = 0
    metrics: dict[str, Any] | None = Field(None, description="The dataset scorer on the prediction file.")
    note: str | None = None
    predictions_file: str
    summary_file: str
    elapsed_s: float | None = Field(None, description="Wall time of the run that last touched this setting.")
    config: dict[str, Any] = Field(default_factory=dict, description="Full config of the setting.")


class AblationResult(BaseModel):
    """Outcome of :func:`run_ablation` (``sevila ablate --json`` prints it)."""

    dataset: str
    out: str
    files: dict[str, str] = Field(default_factory=dict)
    columns: list[str] = Field(default_factory=list, description="Metric columns of the table.")
    headline_metric: str = "Acc"
    rows: list[AblationRow] = Field(default_factory=list)
    selectors: list[str] = Field(default_factory=list)
    skipped_selectors: dict[str, str] = Field(default_factory=dict)
    grid: list[str] = Field(default_factory=list)
    answerers: list[str] = Field(default_factory=list)
    questions: int = 0
    runnable: int = 0
    settings_run: int = 0
    settings_resumed: int = 0
    vit_cache: dict[str, Any] = Field(default_factory=dict)
    selector_memo: dict[str, Any] = Field(default_factory=dict, description="Shared selector models/features.")
    video_checks: dict[str, Any] = Field(default_factory=dict, description="Per selector: what it did with the videos.")
    notes: list[str] = Field(default_factory=list)
    random_weights: bool | None = None
    notice: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    elapsed_s: float = 0.0


def fmt(value: float | None) -> str:
    """A metric cell: two decimals, an en dash when undefined."""
    return "–" if value is None else f"{value:.2f}"


def frames_cell(row: AblationRow) -> str:
    return f"{row.frames}→{row.keyframes}" + (" ¹" if row.own_rule else "")


def _checkpoint_used(result: AblationResult) -> str:
    used = {str(r.config.get("checkpoint") or "none") for r in result.rows if "checkpoint" in r.config}
    return used.pop() if len(used) == 1 else str(result.config.get("checkpoint"))


def render_markdown(result: AblationResult) -> str:
    """``results.md``: a title, the run's key facts, the table and numbered notes."""
    cols, conf = result.columns, result.config
    facts = [
        f"annotations `{conf.get('annotations')}`",
        f"{result.questions} questions" + (f" (--limit {conf['limit']})" if conf.get("limit") else ""),
        f"model `{conf.get('model')}`",
        f"checkpoint `{_checkpoint_used(result)}`",
        f"decoding `{conf.get('decoding')}`",
    ]
    lines = [f"# SeViLA keyframe ablation: {result.dataset}", "", "; ".join(facts), ""]
    if result.notice:
        lines += [f"> **{result.notice}**", ""]
    header = ["Selector", "Frames→Keyframes", "Answerer", *cols, "n"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(cols) + 1)) + "|")
    for row in result.rows:
        cells = [row.selector, frames_cell(row), row.answerer, *(fmt(row.display.get(c)) for c in cols)]
        cells.append(f"{row.n}" if row.n == row.n_total else f"{row.n}/{row.n_total}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if result.notes:
        lines += ["Notes:", "", *(f"{i}. {note}" for i, note in enumerate(result.notes, 1)), ""]
    return "\n".join(lines)


def render_csv(result: AblationResult) -> str:
    """``results.csv``: one line per row, metrics as numbers (empty when undefined), full config as JSON."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["setting", "selector", "frames", "keyframes", "answerer", *result.columns, "n", "n_total",
                "predictions", "errors", "grid_entries", "predictions_file", "config"])
    for row in result.rows:
        w.writerow(
            [row.setting, row.selector, row.frames, row.keyframes, row.answerer]
            + ["" if row.display.get(c) is None else row.display[c] for c in result.columns]
            + [row.n, row.n_total, row.predictions, row.errors, " ".join(row.grid_entries), row.predictions_file,
               json.dumps(row.config, sort_keys=True, default=str)]
        )
    return buf.getvalue()


def render_png(result: AblationResult, path: Path) -> Path:
    """``results.png``: the headline metric per setting as horizontal bars (matplotlib Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result.rows
    values = [r.headline if r.headline is not None else 0.0 for r in rows]
    selectors = list(dict.fromkeys(r.selector for r in rows))
    fig = Figure(figsize=(8.0, 1.6 + 0.32 * max(len(rows), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    pos = list(range(len(rows)))
    ax.barh(pos, values, color=[f"C{selectors.index(r.selector) % 10}" for r in rows])
    for y, r, v in zip(pos, rows, values, strict=True):
        ax.text(v + 1, y, "n/a" if r.headline is None else f"{r.headline:.2f}", va="center", fontsize=7)
    ax.set_yticks(pos)
    ax.set_yticklabels([f"{r.selector} {r.frames}→{r.keyframes} {r.answerer}" for r in rows], fontsize=8)
    ax.invert_yaxis()  # first row on top, as in the table
    ax.set_xlim(0, 110)
    ax.set_xlabel(f"{result.headline_metric} (%)")
    title = f"SeViLA keyframe ablation: {result.dataset} ({result.questions} questions)"
    ax.set_title(title + (f"\n{result.notice}" if result.notice else ""), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def terminal_rows(result: AblationResult, width: int = 80) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the terminal table: the headline plus as many metric columns as fit ``width``."""
    fixed = ["setting", "frames", result.headline_metric, "n"]
    cols = [c for c in result.columns if c != result.headline_metric]
    used = 14 + 10 + 9 + 7
    keep = []
    for c in cols:
        if used + max(len(c), 6) + 3 > width:
            break
        keep.append(c)
        used += max(len(c), 6) + 3
    header = [fixed[0], fixed[1], fixed[2], *keep, fixed[3]]
    body = [
        [f"{r.selector} {r.answerer}", frames_cell(r), fmt(r.headline), *(fmt(r.display.get(c)) for c in keep),
         f"{r.n}/{r.n_total}"]
        for r in result.rows
    ]
    return header, body


def print_terminal(result: AblationResult, console: Any) -> None:
    """The 80-column table on a rich ``console``, then the numbered notes and where the files are."""
    from rich.table import Table

    header, body = terminal_rows(result, width=80)
    table = Table(title=f"sevila ablate {result.dataset} ({result.questions} questions)", width=80)
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for cells in body:
        table.add_row(*cells)
    console.print(table)
    for i, note in enumerate(dict.fromkeys(result.notes), 1):
        console.print(f"{i}. {note}", highlight=False)
    vit, files = result.vit_cache, result.files
    if vit.get("enabled"):
        console.print(f"ViT feature cache: {vit.get('hits', 0)} hits, {vit.get('misses', 0)} misses ({vit.get('dir')})",
                      highlight=False)
    console.print(f"{result.settings_run} settings run, {result.settings_resumed} resumed; all columns in "
                  f"{files.get('markdown')} and {files.get('csv')}; plot {files.get('png')}", highlight=False)
