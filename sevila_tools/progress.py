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


class PlainProgress:
    """Progress as periodic plain lines (``label: done/total (pct), rate, ETA``) for a stderr that is not a
    terminal (logs, CI, batch jobs); the same ``add_task``/``update`` calls as a rich progress bar."""

    def __init__(self, enabled: bool = True, unit: str = "it", every: float = 30.0, stream: Any = None) -> None:
        import sys
        import time

        self.enabled, self.unit, self.every = enabled, unit, every
        self.stream = stream if stream is not None else sys.stderr
        self._clock = time.monotonic
        self._tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        for task_id, task in self._tasks.items():
            if task["done"] != task["printed"]:
                self._line(task_id)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        """Start a task; returns its id."""
        task_id = len(self._tasks)
        now = self._clock()
        self._tasks[task_id] = {
            "label": description, "total": total, "done": completed, "start_done": completed,
            "start": now, "last": now, "printed": None, "info": fields.get("info", ""),
        }
        return task_id

    def update(self, task_id: int, advance: float = 0, completed: float | None = None, **fields: Any) -> None:
        """Advance a task; prints a line every ``every`` seconds and when the task completes."""
        task = self._tasks[task_id]
        task["done"] = completed if completed is not None else task["done"] + advance
        task["info"] = fields.get("info", task["info"])
        finished = task["total"] is not None and task["done"] >= task["total"]
        if finished or self._clock() - task["last"] >= self.every:
            self._line(task_id)

    def _line(self, task_id: int) -> None:
        task = self._tasks[task_id]
        task["last"], task["printed"] = self._clock(), task["done"]
        if not self.enabled:
            return
        elapsed = max(self._clock() - task["start"], 1e-9)
        rate = (task["done"] - task["start_done"]) / elapsed
        total = task["total"]
        parts = [f"{task['label']}: {task['done']:g}/{total:g}" if total else f"{task['label']}: {task['done']:g}"]
        if total:
            parts[0] += f" ({100 * task['done'] / total:.0f}%)"
        parts.append(f"{rate:.2f} {self.unit}/s")
        if total and rate > 0:
            left = int((total - task["done"]) / rate)
            parts.append(f"ETA {left // 3600:d}:{left % 3600 // 60:02d}:{left % 60:02d}")
        if task["info"]:
            parts.append(str(task["info"]))
        self.stream.write(", ".join(parts) + "\n")
        self.stream.flush()


def make_run_progress(
    enabled: bool = True, unit: str = "it", info: bool = False, every: float = 30.0, stream: Any = None
) -> Any:
    """A rich bar when stderr is a terminal, else :class:`PlainProgress` lines every ``every`` seconds."""
    import sys

    target = stream if stream is not None else sys.stderr
    if enabled and not (hasattr(target, "isatty") and target.isatty()):
        return PlainProgress(enabled, unit, every, target)
    return make_progress(enabled, unit, info)
