"""``sevila pseudo-label``: the reverse chain's labels for every question and epoch, written resumably."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sevila_tools.errors import InputError
from sevila_tools.files import atomic_write_text
from sevila_tools.pipeline import pseudo_labels_of
from sevila_tools.training.accel import gather, make_accelerator
from sevila_tools.training.checkpoints import provenance
from sevila_tools.training.config import TrainConfig
from sevila_tools.training.data import DataReport, DrawSpec, Item, load_item
from sevila_tools.training.frozen import build_pipeline, encoded_of, frozen_pass, query_of
from sevila_tools.training.labelfile import (
    LABELS_NAME,
    LABELS_SUMMARY_NAME,
    read_label_lines,
    summarize_labels,
)
from sevila_tools.training.runs import QuietRepeats, RunLog, progress, write_summary
from sevila_tools.training.sampling import qid_key

PARTS = "parts"


def _prepare(out: Path, acc: Any, overwrite: bool, resume: bool) -> None:
    exists = (out / LABELS_NAME).exists() or (out / PARTS).exists()
    if exists and not (overwrite or resume):
        raise InputError(
            f"{out} already holds pseudo-labels; pass --resume to continue or --overwrite to replace them"
        )
    if acc.is_main_process and overwrite and not resume:
        (out / LABELS_NAME).unlink(missing_ok=True)
        shutil.rmtree(out / PARTS, ignore_errors=True)
    if acc.is_main_process:
        (out / PARTS).mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()


def _part_records(path: Path) -> list[dict[str, Any]]:
    """Records of a part file; a line cut by a crash is ignored (its chunk is labelled again)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and {"qid", "epoch", "labels", "frame_indices"} <= set(rec):
            out.append(rec)
    return out


def _done(out: Path) -> set[tuple[int, str]]:
    recs = [r for f in sorted((out / PARTS).glob("*.jsonl")) for r in _part_records(f)]
    if (out / LABELS_NAME).is_file():
        recs += read_label_lines(out / LABELS_NAME)
    return {(int(r.get("epoch") or 0), str(r["qid"])) for r in recs}


def _record(s: Any, item: Item, epoch: int, cfg: TrainConfig, preds: list[int]) -> dict[str, Any]:
    fr = item.frames
    return {
        "qid": s.qid,
        "video": s.video,
        "qtype": s.qtype,
        "epoch": epoch,
        "seed": cfg.seed,
        "answer": s.answer,
        "frame_indices": list(fr.indices),
        "times": [float(t) for t in fr.timestamps],
        "fps": fr.fps,
        "predictions": preds,
        "labels": pseudo_labels_of(preds, s.answer),
        "augment": cfg.augment,
        "frozen_dropout": cfg.frozen_dropout,
    }


def _label_chunk(
    pipeline: Any,
    samples: Sequence[Any],
    chunk: list[tuple[int, int]],
    cfg: TrainConfig,
    report: DataReport,
    skip_bad: bool,
) -> list[dict[str, Any]]:
    """Labels of a chunk of (epoch, position) jobs: decode (and crop) as the trainer does, one ViT call, the
    frozen single-frame Answerer through the pipeline."""
    rt = pipeline.runtime
    spec = DrawSpec(cfg.num_frames, cfg.seed, cfg.decoder, cfg.augment, skip_bad_videos=skip_bad)
    loaded = [(e, load_item(samples[p], p, e, spec)) for e, p in chunk]
    for _, entry in loaded:
        report.note(entry)
    items = [(e, it) for e, it in loaded if isinstance(it, Item)]
    if not items:
        return []
    raw = rt.vit(np.concatenate([it.frames.frames for _, it in items]))
    raw = raw.view(len(items), -1, *raw.shape[1:])
    pairs = [
        (encoded_of(samples[it.position], it.frames, raw[i]), query_of(samples[it.position]))
        for i, (_, it) in enumerate(items)
    ]
    e0, p0 = chunk[0]
    torch.manual_seed(
        int(np.random.SeedSequence([cfg.seed, e0, qid_key(samples[p0].qid), 0x1ABE]).generate_state(1)[0])
    )
    with frozen_pass(rt.model, "answerer", cfg.frozen_dropout):
        preds = pipeline.single_frame_predictions(pairs)
    return [_record(samples[it.position], it, e, cfg, pr) for (e, it), pr in zip(items, preds, strict=True)]


def _merge(out: Path, samples: Sequence[Any]) -> list[dict[str, Any]]:
    order = {str(s.qid): i for i, s in enumerate(samples)}
    records = {}
    if (out / LABELS_NAME).is_file():
        records.update(
            {(int(r.get("epoch") or 0), str(r["qid"])): r for r in read_label_lines(out / LABELS_NAME)}
        )
    for f in sorted((out / PARTS).glob("*.jsonl")):
        for r in _part_records(f):
            records[(int(r["epoch"]), str(r["qid"]))] = r
    merged = sorted(records.values(), key=lambda r: (r["epoch"], order.get(str(r["qid"]), len(order))))
    atomic_write_text(out / LABELS_NAME, "".join(json.dumps(r) + "\n" for r in merged))
    shutil.rmtree(out / PARTS, ignore_errors=True)
    return merged


def pseudo_label(
    runtime: Any,
    samples: Sequence[Any],
    out_dir: str | Path,
    config: TrainConfig,
    *,
    epochs: int | None = None,
    accelerator: Any | None = None,
    progress_bar: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    skip_bad_videos: bool = False,
    data_report: DataReport | None = None,
    say: Callable[[str], None] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Write ``OUT/pseudo_labels.jsonl`` (+ summaries): for every question and epoch ``e < epochs`` (default:
    the config's epochs, one fresh label set per refinement epoch), the frames the trainer would draw in
    epoch ``e`` with the same seed (and crop), labelled ``yes`` iff the frozen Answerer's teacher-forced
    single-frame answer is the gold option. Returns the summary."""
    acc = accelerator if accelerator is not None else make_accelerator(runtime.device)
    out, epochs = Path(out_dir), int(epochs or config.epochs)
    if not samples:
        raise InputError("no questions with a gold answer and 2-5 options to pseudo-label")
    _prepare(out, acc, overwrite, resume)
    log, report = RunLog(out, say, acc.is_main_process), data_report or DataReport(questions=len(samples))
    done = _done(out) if resume else set()
    jobs = [(e, p) for e in range(epochs) for p in range(len(samples))][
        acc.process_index :: acc.num_processes
    ]
    chunks = [jobs[i : i + config.batch_size] for i in range(0, len(jobs), config.batch_size)]
    todo = [c for c in chunks if any((e, str(samples[p].qid)) not in done for e, p in c)]
    log(
        f"pseudo-labels: {len(samples)} questions x {epochs} epochs, {len(jobs) - sum(map(len, todo))} already done"
    )
    pipeline = build_pipeline(runtime, config.prompts, config.decoder)
    runtime.model.eval()
    part = out / PARTS / f"rank{acc.process_index}.{len(list((out / PARTS).glob('*')))}.jsonl"
    with progress(progress_bar and acc.is_main_process, info=False) as bar, QuietRepeats():
        task = bar.add_task("pseudo-label", total=sum(map(len, todo)))
        for chunk in todo:
            records = _label_chunk(pipeline, samples, chunk, config, report, skip_bad_videos)
            with open(part, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
            bar.update(task, advance=len(chunk))
    acc.wait_for_everyone()
    reports = gather(acc, report)
    for other in reports[1:]:
        report.merge(other)
    summary: dict[str, Any] = {}
    if acc.is_main_process:
        merged = _merge(out, samples)
        summary = summarize_labels(merged)
        summary.update(
            file=str(out / LABELS_NAME),
            epochs=epochs,
            seed=config.seed,
            frames_per_question=config.num_frames,
            dataset=config.dataset,
            prompts=config.prompts,
            augment=config.augment,
            frozen_dropout=config.frozen_dropout,
            data=report.to_dict(),
            model=runtime.info.get("model"),
            checkpoint=provenance(runtime.info.get("checkpoint")),
            sources=runtime.info.get("sources"),
            config=config.to_dict(),
            deviations=config.deviations(),
        )
        atomic_write_text(out / LABELS_SUMMARY_NAME, json.dumps(summary, indent=2, default=str))
        write_summary(out, summary, command)
        log(
            f"wrote {summary['records']} label sets to {out / LABELS_NAME} (positive rate {summary['positive_rate']:.3f})"
        )
    acc.wait_for_everyone()
    return summary
