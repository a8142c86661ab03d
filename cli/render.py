"""Human output of the commands (``--json`` prints the result models instead)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.table import Table

from sevila_tools.cli.common import console, err_console, show_notice
from sevila_tools.prompts import LETTERS


def table(title: str, *columns: str, **kw: Any) -> Table:
    """A table whose title is never wrapped narrower than itself (also when piped to a file)."""
    t = Table(title=title, min_width=min(len(title) + 4, console.width), **kw)
    for col in columns:
        t.add_column(col)
    return t


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for k, v in data.items():
        if isinstance(v, dict):
            rows += _flatten(v, f"{prefix}{k}.")
        elif isinstance(v, list):
            rows.append((f"{prefix}{k}", ", ".join(map(str, v))))
        else:
            rows.append((f"{prefix}{k}", "-" if v is None else str(v)))
    return rows


def key_values(data: BaseModel | dict[str, Any], title: str) -> Table:
    """Nested fields as ``key.sub`` rows (lists joined, None as a dash)."""
    t = table(title, show_header=False)
    for key, value in _flatten(data.model_dump(mode="json") if isinstance(data, BaseModel) else data):
        t.add_row(key, value)
    return t


def answer_lines(ans: Any) -> None:
    """Each option with its probability, then the chosen one."""
    for i, (text, p) in enumerate(zip(ans.options, ans.option_probs, strict=True)):
        console.print(f"  ({LETTERS[i]}) {text}  p={p:.3f}{'  <' if i == ans.answer_index else ''}", highlight=False)
    console.print(f"answer: [bold]({ans.answer_letter}) {ans.answer_text}[/bold]")


def localization(result: Any) -> None:
    """Every candidate with score and p(yes), the keyframes, and the answer when there is one."""
    loc, ans = (result.localization, result.answer) if hasattr(result, "answer") else (result, None)
    show_notice(loc.notice)
    t = table(f"{loc.selector} on {Path(loc.video).name}: {loc.question}", "#", "frame", "time (s)", "score",
              "p(yes)", "key", caption="score: the selector's ranking score (localizer: raw first-step 'yes' "
              "logit); p(yes): softmax over the (no, yes) logits; *: keyframe")
    for f in loc.frames:
        t.add_row(str(f.position), str(f.frame_index), f"{f.time:.2f}", "" if f.score is None else f"{f.score:.3f}",
                  "" if f.yes_prob is None else f"{f.yes_prob:.3f}", "[bold green]*[/bold green]" if f.keyframe else "")
    console.print(t)
    if loc.padded:
        console.print("note: padded: the video has fewer frames than requested, so its last frame repeats",
                      highlight=False)
    console.print("keyframes: " + ", ".join(f"{k.time:.2f}s (frame {k.frame_index})" for k in loc.keyframes))
    if ans is not None:
        answer_lines(ans)


def answer(result: Any) -> None:
    """The frames read and the answer."""
    show_notice(result.notice)
    console.print("frames at: " + ", ".join(f"{t:.2f}s" for t in result.frame_times))
    answer_lines(result)


def moments(result: Any) -> None:
    """Ranked windows of a moments query."""
    show_notice(result.notice)
    t = table(f"moments of {Path(result.video).name} ({result.duration:.1f} s): {result.query}",
              "#", "start (s)", "end (s)", "score", caption=f"note: {result.span_rule}")
    for i, (st, ed, score) in enumerate(result.pred_relevant_windows, 1):
        t.add_row(str(i), f"{st:.2f}", f"{ed:.2f}", f"{score:.3f}")
    console.print(t)


def selectors(rows: dict[str, Any]) -> None:
    """Each selector: description, where it comes from, its options."""
    for name, row in rows.items():
        gold = " [yellow](needs the gold answer)[/yellow]" if row["needs_gold"] else ""
        where = "" if row["source"].startswith("sevila_tools.") else f" [dim](from {row['source']})[/dim]"
        console.print(f"[bold]{name}[/bold]: {row['description']}{gold}{where}", highlight=False)
        for key, opt in row["options"].items():
            console.print(f"    {key} (default {opt['default']!r}): {opt['description']}", highlight=False)


def eval_summary(s: Any) -> None:
    """What ran, where it went, and the metrics table."""
    from sevila_tools.eval.scorers import metrics_table

    show_notice(s.notice)
    console.print(key_values(s.overview(), f"sevila eval {s.dataset}"))
    for err in s.first_errors:
        err_console.print(f"error record: {err['qid']}: {err['error']}", highlight=False)
    if s.metrics is not None:
        console.print(metrics_table(s.metrics))
    if s.metrics_note:
        console.print(f"[yellow]note:[/yellow] {s.metrics_note}", highlight=False)


def ablation(result: Any) -> None:
    """The ablation table, its notes, and where the files are."""
    from sevila_tools.eval.ablate import print_terminal

    show_notice(result.notice)
    print_terminal(result, console)


def converted(summary: dict[str, Any]) -> None:
    """Where the converted folder is and how to use it."""
    console.print(key_values(summary, "sevila convert"), f"load it with: sevila localize VIDEO QUESTION --model "
                  f"{summary['folder']}")


def demo(out: Any) -> None:
    """The demo's question, chain result, verdict and plot."""
    localization(out.result)  # its title names the clip and the question
    mark = "[bold green]correct[/]" if out.correct else "[bold red]wrong[/]"
    console.print(f"gold: ({'ABCDE'[out.gold]}) {out.options[out.gold]} -> {mark}; the asked event lasts "
                  f"{out.event[0]:.2f}-{out.event[1]:.2f} s, {out.keyframes_in_event} of 4 keyframes in it")
    console.print(f"plot: {out.plot}")


def frames_converted(s: Any) -> None:
    """What ``convert-frames`` wrote, and its notes."""
    console.print(f"{s.records} questions -> {', '.join(s.outputs)}", highlight=False)
    for note in s.notes:
        console.print(f"note: {note}", highlight=False)


def synth(s: Any) -> None:
    """Where the generated set went and its questions per split."""
    counts = ", ".join(f"{k} {v}" for k, v in s.questions.items())
    console.print(f"needleqa (seed {s.seed}): {s.videos} videos, questions {counts} -> {s.out}", highlight=False)


def bench(report: dict[str, Any]) -> None:
    """The benchmark tables (and where the JSON report went)."""
    from sevila_tools.benchmarks.report import print_report

    print_report(report, console)


def _grid(title: str, header: list[str], rows: list[list[str]]) -> None:
    t = table(title, *header)
    for row in rows:
        t.add_row(*row)
    console.print(t)


def train(r: Any) -> None:
    """A training run: where its weights are, how far it got, losses, the best epoch, deviations."""
    console.print(key_values(r.overview(), f"sevila {r.task}: {r.out_dir}"))
    if not r.complete:
        console.print(f"stopped early: continue with the same command plus --resume (--out {r.out_dir})",
                      highlight=False)


def pseudo_labels(r: Any) -> None:
    """Labelled frames and the positive rate per question type."""
    _grid(f"pseudo-labels: {r.file}", *r.table())
    console.print(f"{(r.model_extra or {}).get('records_without_positive')} label sets have no positive frame")


def self_refine(r: Any) -> None:
    """One row per iteration: positive rate, losses, validation, weights."""
    _grid(f"self-refinement ({r.order} order)", *r.table())
    if not r.complete:
        console.print("stopped early: continue with the same command plus --resume", highlight=False)
