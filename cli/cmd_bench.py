"""``sevila bench``: speed and memory of the forward chain, stage by stage (see :mod:`sevila_tools.bench`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from sevila_tools.cli.common import (
    DecoderOpt,
    DeviceOpt,
    JsonOpt,
    console,
    err_console,
    guarded,
    print_json,
)
from sevila_tools.errors import InputError

SizeOpt = Annotated[
    str,
    typer.Option(
        "--size",
        help="tiny: the tiny-random preset. full: SeViLA's real architecture (ViT-g, 2 Q-Formers, Flan-T5-XL) "
        "with random weights, no download (a GPU job; on CPU a one-sample smoke run).",
    ),
]


def _ms(stage: dict[str, Any] | None) -> str:
    """Milliseconds per sample, 3-4 significant digits."""
    if not stage:
        return "-"
    ms = stage["s_per_sample"] * 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def print_report(report: dict[str, Any]) -> None:
    """Rich tables: per-stage time per sample, throughput, peak memory; speed-up and the paper's figures."""
    m, model = report["machine"], report["model"]
    gpu = f", GPU {m['cuda']['name']}" if m.get("cuda") else ""
    console.print(
        f"[bold]sevila bench[/bold] {model['model']} on {model['device']} {model['precision']} | "
        f"{m['cpu_model']}, {m['usable_cores']} cores, torch {m['torch']}{gpu}"
    )
    table = Table(
        title="ms per sample (median); chain/s = samples per second",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
    )
    cols = [
        "T:K",
        "B",
        "path",
        "decode",
        "prep",
        "ViT",
        "loc",
        "ans",
        "chain",
        "chain/s",
        "e2e",
        "ans-only",
        "GiB",
    ]
    for c in cols:
        table.add_column(c, justify="left" if c == "path" else "right", no_wrap=True)
    rows = list(report["results"]) + list(report.get("reference", []))
    order = report["config"]["settings"]
    rank = {"reference": 0, "reference_trained_eos": 1, "fast": 2}
    rows.sort(key=lambda r: (order.index(r["setting"]), rank.get(r["path"], 3), r["batch_size"]))
    for r in rows:
        st = r["stages"]
        ref = r["path"] != "fast"
        name = {"fast": "fast", "reference": "ref", "reference_trained_eos": "ref-eos"}.get(
            r["path"], r["path"]
        )
        table.add_row(
            r["setting"],
            f"1x{r['questions']}" if ref else str(r["batch_size"]),
            name,
            _ms(st.get("decode")),
            _ms(st.get("preprocess")),
            _ms(st.get("vit")),
            _ms(st.get("localizer")),
            _ms(st.get("answerer")),
            _ms(st.get("chain")),
            f"{st['chain']['samples_per_s']:.2f}",
            _ms(st.get("end_to_end")),
            _ms(st.get("answerer_only")),
            f"{r['memory'].get('peak_gib', 0):.2f}",
        )
    # piped output: rich would squeeze the table to 80 columns
    (console if console.is_terminal else Console(width=120)).print(table)
    paper = report["paper"]
    console.print(
        f"paper ({paper['gpu']}, {paper['setting']}): SeViLA {paper['sevila_s_per_sample']} s/sample, "
        f"{paper['sevila_memory_gb']} GB; Answerer alone {paper['answerer_only_s_per_sample']} s/sample"
    )
    for a in report.get("agreement", []):
        ok = a["keyframes_equal"] and a["answers_equal"]
        console.print(
            f"agreement {a['setting']} ({a['questions']} questions): max |yes diff| {a['max_abs_diff_yes']:.2e}, "
            f"max |letter diff| {a['max_abs_diff_letters']:.2e}, keyframes equal {a['keyframes_equal']}, "
            f"answers equal {a['answers_equal']}" + ("" if ok else "  [red]MISMATCH[/red]")
        )
    for s in report.get("speedups", []):
        console.print(
            f"speed-up {s['setting']} batch {s['batch_size']}: chain x{s['chain']}, end to end x{s['end_to_end']}; "
            f"chain vs reference stopped at a trained model's </s> x{s['chain_vs_trained_eos']}"
        )
    if report.get("speedup") is not None:
        console.print(
            f"[bold]speedup[/bold] x{report['speedup']} (vs generate stopped at a trained model's </s>: "
            f"x{report['speedup_vs_trained_eos']}). {report['speedup_basis']}"
        )


def bench(
    size: SizeOpt = "tiny",
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Questions per batch, e.g. 1,8.")] = "1,8",
    settings: Annotated[
        str, typer.Option("--settings", help="FRAMES:KEYFRAMES settings, e.g. 32:4,16:4,64:8.")
    ] = "32:4,16:4,64:8",
    repeats: Annotated[
        int | None, typer.Option("--repeats", help="Timed runs (median reported); default 3.")
    ] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", help="Untimed runs first; default 1.")] = None,
    reference: Annotated[
        bool, typer.Option("--reference", help="Also time the official-style path and report the speed-up.")
    ] = False,
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    vit_dtype: Annotated[
        str | None, typer.Option("--vit-dtype", help="fp32, fp16 or bf16 (default: policy).")
    ] = None,
    t5_dtype: Annotated[
        str | None, typer.Option("--t5-dtype", help="fp32, fp16 or bf16 (default: policy).")
    ] = None,
    vit_batch_size: Annotated[
        int | None, typer.Option("--vit-batch-size", min=1, help="Frames per ViT call (memory knob).")
    ] = None,
    t5_batch_size: Annotated[
        int | None, typer.Option("--t5-batch-size", min=1, help="T5 sequences per call (memory knob).")
    ] = None,
    video_frames: Annotated[
        int, typer.Option("--video-frames", min=8, help="Frames of each synthetic video (30 fps).")
    ] = 300,
    num_options: Annotated[
        int, typer.Option("--num-options", min=2, max=5, help="Options per question.")
    ] = 5,
    decode_workers: Annotated[
        int | None, typer.Option("--decode-workers", min=1, help="Threads decoding videos of a batch.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Benchmark this model (converted folder or BLIP-2 id) instead of --size."
        ),
    ] = None,
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", "-c", help="SeViLA weights with --model.")
    ] = "auto",
    questions_per_call: Annotated[
        int | None,
        typer.Option(
            "--questions-per-call",
            min=1,
            help="Questions per Localizer call (default: batch on GPU, 1 on CPU).",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="torch CPU threads (default: torch's choice).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Time each stage (decode, preprocess, ViT, Localizer, Answerer) and the whole forward chain; peak memory."""
    from sevila_tools.bench import build_full_runtime, parse_batch_sizes, parse_settings, run_bench
    from sevila_tools.loading import resolve_device

    if size not in ("tiny", "full"):
        raise InputError(f"--size must be tiny or full, got {size!r}")
    for name, value in (("--vit-dtype", vit_dtype), ("--t5-dtype", t5_dtype)):
        if value not in (None, "fp32", "fp16", "bf16"):
            raise InputError(f"{name} must be fp32, fp16 or bf16, got {value!r}")
    sizes, sets = parse_batch_sizes(batch_sizes), parse_settings(settings)
    if threads:
        import torch

        torch.set_num_threads(threads)
    dev = resolve_device(device)
    quiet = json_output
    notes: list[str] = []
    if model is None and size == "full" and dev.type == "cpu":
        if sizes != [1] or len(sets) > 1:
            notes.append("--size full on CPU is a one-sample smoke run: batch 1, first setting only")
        sizes, sets = [1], sets[:1]
        if sets[0].frames > 32:
            raise InputError("--size full on CPU supports at most 32 frames (e.g. --settings 32:4 or 8:2)")
        repeats = 1 if repeats is None else repeats
        warmup = 0 if warmup is None else warmup
        vit_dtype, t5_dtype = vit_dtype or "bf16", t5_dtype or "bf16"
        fp32 = "fp32" in (vit_dtype, t5_dtype)
        ram = "~16-17 GB" if fp32 else "~9-10 GB"
        notes.append(f"CPU full-size smoke run in ViT {vit_dtype} / T5 {t5_dtype}: minutes, {ram} of RAM")
        err_console.print(
            f"[yellow]warning:[/yellow] --size full on CPU takes minutes and {ram} of RAM (ViT {vit_dtype}, "
            f"T5 {t5_dtype}; random weights of the real shapes; a GPU job in practice)"
        )
    repeats = 3 if repeats is None else repeats
    warmup = 1 if warmup is None else warmup

    if model is not None:
        from sevila_tools.loading import load_runtime

        if not quiet:
            err_console.print(f"loading {model} ...")
        runtime = load_runtime(model, checkpoint, device=device, vit_dtype=vit_dtype, t5_dtype=t5_dtype)
    elif size == "full":
        if quiet:
            runtime = build_full_runtime(device, vit_dtype, t5_dtype)
        else:
            with err_console.status("building the full-size model (random weights) ..."):
                runtime = build_full_runtime(device, vit_dtype, t5_dtype)
    else:
        from sevila_tools.loading import load_runtime

        runtime = load_runtime("tiny-random", "none", device=device, vit_dtype=vit_dtype, t5_dtype=t5_dtype)
    if vit_batch_size:
        runtime.vit_batch_size = vit_batch_size
    if t5_batch_size:
        runtime.t5_batch_size = t5_batch_size

    def progress(msg: str) -> None:
        if not quiet:
            err_console.print(f"[dim]{msg}[/dim]")

    report = run_bench(
        runtime,
        sets,
        sizes,
        repeats=repeats,
        warmup=warmup,
        reference=reference,
        decoder=decoder,
        video_frames=video_frames,
        num_options=num_options,
        decode_workers=decode_workers,
        progress=progress,
        questions_per_call=questions_per_call,
    )
    report["model"]["size"] = size if model is None else "custom"
    report["notes"] = notes
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if json_output:
        print_json(report)
    else:
        print_report(report)
        if out is not None:
            console.print(f"report: {out}")


def register(app: typer.Typer) -> None:
    """Add ``sevila bench`` to the main application."""
    app.command("bench")(guarded(bench))
