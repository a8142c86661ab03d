"""Human-readable ``sevila bench`` output: rich tables of the stage timings and the end-to-end scenarios."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

STAGE_COLUMNS = ("decode", "vit", "select", "gather", "answer", "chain", "end_to_end", "answerer_only")
PATH_NAMES = {"pipeline": "pipeline", "reference": "ref-30", "reference_trained_eos": "ref-eos"}


def _ms(stage: dict[str, Any] | None, key: str = "s_per_sample") -> str:
    """Milliseconds, 3-4 significant digits."""
    if not stage:
        return "-"
    ms = stage[key] * 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _table(title: str, cols: list[str]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for i, c in enumerate(cols):
        table.add_column(c, justify="left" if i == 0 or c == "path" else "right", no_wrap=True)
    return table


def _stage_table(report: dict[str, Any]) -> Table:
    cols = ["T:K", "B", "path", "decode", "ViT", "select", "gather", "answer", "chain", "chain/s", "e2e"]
    table = _table("ms per sample (median); chain/s = samples per second", [*cols, "ans-only", "GiB"])
    rows = list(report["results"]) + list(report.get("reference", []))
    order = report["config"]["settings"]
    rank = {"reference": 0, "reference_trained_eos": 1, "pipeline": 2}
    rows.sort(key=lambda r: (order.index(r["setting"]), rank.get(r["path"], 3), r["batch_size"]))
    for r in rows:
        st = r["stages"]
        batch = f"1x{r['questions']}" if r["path"] != "pipeline" else str(r["batch_size"])
        cells = [_ms(st.get(c)) for c in STAGE_COLUMNS]
        cells.insert(6, f"{st['chain']['samples_per_s']:.2f}")
        table.add_row(
            r["setting"],
            batch,
            PATH_NAMES.get(r["path"], r["path"]),
            *cells,
            f"{r['memory']['peak_gib']:.2f}",
        )
    return table


def _print_stage_notes(console: Console, report: dict[str, Any]) -> None:
    paper = report["paper"]
    console.print(
        f"paper ({paper['gpu']}, {paper['setting']}): SeViLA {paper['sevila_s_per_sample']} s/sample, "
        f"{paper['sevila_memory_gb']} GB; Answerer alone {paper['answerer_only_s_per_sample']} s/sample"
    )
    for a in report.get("agreement", []):
        ok = a["keyframes_equal"] and a["answers_equal"] and a["step0_equal"]
        console.print(
            f"agreement {a['setting']} ({a['questions']} questions): max |yes diff| {a['max_abs_diff_yes']:.2e}, "
            f"max |option prob diff| {a['max_abs_diff_option_probs']:.2e}, keyframes equal {a['keyframes_equal']}, "
            f"answers equal {a['answers_equal']}" + ("" if ok else "  [red]MISMATCH[/red]")
        )
    for s in report.get("speedups", []):
        console.print(
            f"speed-up {s['setting']} batch {s['batch_size']}: chain x{s['chain_vs_trained_eos']} vs the reference "
            f"stopped at a trained model's </s> (x{s['chain_vs_30_steps']} vs 30 generate steps); end to end "
            f"x{s['end_to_end_vs_trained_eos']}"
        )
    if report.get("speedup_vs_trained_eos") is not None:
        console.print(
            f"[bold]speed-up x{report['speedup_vs_trained_eos']}[/bold] (secondary: x{report['speedup_vs_30_steps']} "
            f"against all 30 generate steps). {report['speedup_basis']}"
        )


def _single_table(rows: list[dict[str, Any]]) -> Table:
    cols = ["video", "length", "size", "T:K", "decode", "ViT", "chain", "total", "decode share", "1 reader"]
    table = _table("one question on one new video: ms (median)", [*cols, "decode/1 reader", "target"])
    for r in rows:
        st, target = r["stages"], r["decode_target"]
        verdict = "-" if target is None else f"<= {target} " + ("met" if r["decode_target_met"] else "MISSED")
        table.add_row(
            r["video"], f"{r['seconds']:g} s", r["resolution"], r["setting"],
            *(_ms(st[c], "s") for c in ("decode", "vit", "chain", "total")),
            f"{r['decode_share']:.0%}", _ms(st["decode_one_reader"], "s"), f"{r['decode_vs_one_reader']:.2f}", verdict,
        )  # fmt: skip
    return table


def _print_dataset(console: Console, d: dict[str, Any]) -> None:
    st = d["stages"]
    console.print(
        f"[bold]dataset[/bold] ({d['about']}; {d['videos']} videos of {d['seconds_per_video']:g} s, "
        f"{d['questions']} questions, {d['setting']}, feature cache off): [bold]{d['questions_per_s']:.2f} "
        f"questions/s[/bold]; wall {st['wall']['s']:.2f} s, decode alone {st['decode_alone']['s']:.2f} s, model "
        f"alone {st['model_alone']['s']:.2f} s (decode share {d['decode_share']:.0%}); wall / max(alone) "
        f"{d['wall_vs_max_alone']:.2f} (target <= {d['overlap_target']}: "
        + ("met" if d["overlap_target_met"] else "[red]MISSED[/red]")
        + f"), wall / sum(alone) {d['wall_vs_sum_alone']:.2f}"
    )
    if d.get("verdict"):
        console.print(f"dataset overlap per repeat: {d.get('overlap_runs')}; {d['verdict']}")


def print_report(report: dict[str, Any], console: Console) -> None:
    """Rich tables and summary lines for a ``sevila bench`` report."""
    m, model = report["machine"], report["model"]
    gpu = f", GPU {m['cuda']['name']}" if m.get("cuda") else ""
    console.print(
        f"[bold]sevila bench[/bold] {model['model']} on {model['device']} {model['precision']} | "
        f"{m['cpu_model']}, {m['usable_cores']} cores, load {m['load_average']}, torch {m['torch']}{gpu}"
    )
    wide = console if console.is_terminal else Console(width=140)  # piped: rich would squeeze to 80 columns
    if report.get("results"):
        wide.print(_stage_table(report))
        _print_stage_notes(console, report)
    sc = report.get("scenarios") or {}
    if sc.get("single"):
        wide.print(_single_table(sc["single"]))
    if sc.get("dataset"):
        _print_dataset(console, sc["dataset"])
    if sc:
        api = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in sc["video_api"].items())
        console.print(f"knobs: {sc['config']}; video APIs present: {api}")
    for note in report.get("notes", []):
        console.print(f"note: {note}")


__all__ = ["print_report"]
