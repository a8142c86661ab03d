"""Training commands: ``pseudo-label``, ``refine``, ``finetune``, ``pretrain-localizer``, ``self-refine``.

Thin wrappers over :mod:`sevila_tools.training`. Every command reads annotations with
:func:`sevila_tools.eval.datasets.load_annotations`, loads the model once, and writes into ``--out DIR``:
``checkpoint.pth`` (resumable; accepted by ``--checkpoint`` of every command, including ``sevila localize`` and
``sevila eval``), ``metrics.jsonl`` (one line per iteration: step, epoch, loss, lr), ``run.json`` (settings,
weight sources, versions) and ``summary.json``.

Multi-GPU / multi-node: ``accelerate launch --multi_gpu --num_processes N -m sevila_tools.cli.app refine ...``
(DDP; ``--batch-size`` is per process). On CPU add ``--device cpu`` (gloo); note that accelerate 1.x's own
``--cpu`` flag starts a single process unless MPI is configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sevila_tools.cli.common import (
    DEFAULT_MODEL,
    CheckpointOpt,
    DecoderOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    TrustOpt,
    console,
    err_console,
    guarded,
    load_runtime_cli,
    print_json,
)
from sevila_tools.errors import InputError
from sevila_tools.training import CHECKPOINT_NAME

# ------------------------------------------------------------------------------------------------- options
AnnotationsOpt = Annotated[
    Path, typer.Option("--annotations", "-a", help="Annotation file (official release or SeViLA JSON).")
]
VideosOpt = Annotated[Path | None, typer.Option("--videos", help="Folder holding the videos.")]
VideoMapOpt = Annotated[
    Path | None, typer.Option("--video-map", help="JSON {video id: relative path} (NExT-QA).")
]
VideoExtOpt = Annotated[str, typer.Option("--video-ext", help="Extension appended to video ids.")]
DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="nextqa, star, how2qa, tvqa, vlep, qvhighlights.")
]
OutOpt = Annotated[Path, typer.Option("--out", "-O", help="Output folder of the run.")]
EpochsOpt = Annotated[
    int | None, typer.Option("--epochs", min=1, help="Epochs (default: the stage's recipe).")
]
BatchOpt = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Questions per iteration and process.")
]
AccumOpt = Annotated[
    int | None, typer.Option("--accum-steps", min=1, help="Iterations per optimizer step (loss not divided).")
]
LrOpt = Annotated[float | None, typer.Option("--lr", min=0.0, help="Peak learning rate (default 3e-5).")]
MinLrOpt = Annotated[float | None, typer.Option("--min-lr", min=0.0, help="Cosine floor (default 0).")]
WarmupLrOpt = Annotated[
    float | None, typer.Option("--warmup-lr", min=0.0, help="Warm-up start lr (default 1e-8).")
]
WarmupOpt = Annotated[int | None, typer.Option("--warmup-steps", min=0, help="Warm-up iterations (epoch 0).")]
WdOpt = Annotated[
    float | None, typer.Option("--weight-decay", min=0.0, help="AdamW weight decay (default 0.05).")
]
Beta2Opt = Annotated[float | None, typer.Option("--beta2", min=0.0, max=1.0, help="AdamW beta2 (0.999).")]
FramesOpt = Annotated[
    int | None, typer.Option("--frames", "-n", min=1, max=256, help="Random frames per question.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of data order, frame sampling and dropout.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N questions.")]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
]
MaxStepsOpt = Annotated[
    int | None, typer.Option("--max-steps", min=1, help="Stop (with a checkpoint) after N optimizer steps.")
]
SaveEveryOpt = Annotated[
    int, typer.Option("--save-every", min=0, help="Also checkpoint every N optimizer steps.")
]
AugmentOpt = Annotated[
    bool, typer.Option("--augment/--no-augment", help="Official RandomResizedCrop(0.5-1) on training frames.")
]
AmpOpt = Annotated[bool, typer.Option("--amp/--no-amp", help="bf16 autocast of the trained branch on CUDA.")]
DropoutOpt = Annotated[
    bool, typer.Option("--dropout/--no-dropout", help="Train mode (dropout) for branch and T5.")
]
WorkersOpt = Annotated[int, typer.Option("--workers", min=0, help="DataLoader processes decoding videos.")]
TrainedOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--trained-only",
        help="Checkpoint only the trained branch (smaller; loading then takes the other branch from the base).",
    ),
]
SkipMissingOpt = Annotated[
    bool, typer.Option("--skip-missing", help="Drop questions whose video is missing.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
InitOpt = Annotated[
    str | None,
    typer.Option(
        "--init",
        help="Localizer start: 'checkpoint' (the loaded, e.g. QVHighlights-pretrained localizer) or "
        "'answerer-copy' (the BLIP-2 answerer Q-Former copy, what the official refinement script does).",
    ),
]


# ------------------------------------------------------------------------------------------------- helpers
class _Ctx:
    """Accelerator + runtime + printing policy of one command."""

    def __init__(self, model: str, checkpoint: str, device: str, trust: bool, quiet: bool, json_output: bool):
        from sevila_tools.training import device_string, make_accelerator

        self.acc = make_accelerator(device)
        self.main = self.acc.is_main_process
        self.quiet = quiet
        self.json = json_output
        self.rt = load_runtime_cli(
            model, checkpoint, device_string(self.acc.device), trust, quiet=json_output or not self.main
        )

    def say(self, msg: str) -> None:
        if self.main:
            err_console.print(msg, highlight=False, soft_wrap=True)

    @property
    def progress(self) -> bool:
        return not self.quiet


def _samples(
    ctx: _Ctx,
    dataset: str,
    annotations: Path,
    videos: Path | None,
    video_map: Path | None,
    video_ext: str,
    stage: str,
    limit: int | None,
    skip_missing: bool,
) -> list[Any]:
    from sevila_tools.eval.datasets import check_dataset, load_annotations, preflight
    from sevila_tools.training import usable_samples

    check_dataset(dataset)
    samples = load_annotations(
        dataset, annotations, videos_root=videos, video_map=video_map, video_ext=video_ext
    )
    usable, dropped = usable_samples(samples, stage, limit)
    if dropped:
        ctx.say(f"{dropped} of {len(samples)} questions have no gold answer or 2-5 options and are skipped")
    report = preflight(usable)
    if report.missing:
        if not skip_missing:
            raise InputError(f"{report.summary()}; pass --skip-missing to train without them")
        ctx.say(f"skipping questions whose video is missing: {report.summary()}")
        usable = report.ok
    if not usable:
        raise InputError(f"no usable questions in {annotations}")
    ctx.say(f"{len(usable)} questions from {annotations}")
    return usable


def _check_out(out: Path, resume: bool, marker: str) -> None:
    """Refuse (before loading anything) to start a new run over an existing one."""
    if not resume and (out / marker).exists():
        raise InputError(f"{out} already holds a training run ({marker}); pass --resume or use another --out")


def _data_hparams(dataset: str, annotations: Path, videos: Path | None, limit: int | None) -> dict[str, Any]:
    return {
        "annotations": str(annotations.resolve()),
        "videos": str(videos.resolve()) if videos else None,
        "data_dataset": dataset,
        "limit": limit,
    }


def _print_result(ctx: _Ctx, result: Any) -> None:
    if not ctx.main:
        return
    data = result if isinstance(result, dict) else result.to_dict()
    if ctx.json:
        print_json(data)
        return
    table = Table(title=f"sevila {data['stage']}", show_header=False)
    for key in (
        "checkpoint",
        "complete",
        "epochs_completed",
        "steps",
        "iterations",
        "first_loss",
        "last_loss",
    ):
        table.add_row(key, str(data[key]))
    table.add_row("epoch losses", ", ".join(f"{x:.4f}" for x in data["epoch_losses"]))
    console.print(table)
    if not data["complete"]:
        console.print(
            f"stopped early: continue with the same command plus --resume (--out {data['out_dir']})"
        )


def _config(stage: str, **kw: Any) -> Any:
    from sevila_tools.training import TrainConfig

    return TrainConfig.for_stage(stage, **kw)


# ------------------------------------------------------------------------------------------------- commands
@guarded
def pseudo_label_cmd(
    annotations: AnnotationsOpt,
    out: OutOpt,
    videos: VideosOpt = None,
    video_map: VideoMapOpt = None,
    video_ext: VideoExtOpt = ".mp4",
    dataset: DatasetOpt = "nextqa",
    frames: Annotated[
        int, typer.Option("--frames", "-n", min=1, max=256, help="Random frames per question.")
    ] = 4,
    epochs: Annotated[
        int,
        typer.Option("--epochs", min=1, help="Label sets per question, one per refine epoch (same seed)."),
    ] = 1,
    seed: SeedOpt = 42,
    limit: LimitOpt = None,
    augment: AugmentOpt = False,
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    skip_missing: SkipMissingOpt = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Reverse chain: label random frames yes/no by whether the frozen Answerer, reading that frame alone,
    picks the gold option. Writes OUT/pseudo_labels.jsonl and OUT/pseudo_labels_summary.json."""
    from sevila_tools.training import pseudo_label

    ctx = _Ctx(model, checkpoint, device, trust_checkpoint, quiet, json_output)
    samples = _samples(ctx, dataset, annotations, videos, video_map, video_ext, "refine", limit, skip_missing)
    summary = pseudo_label(
        ctx.rt,
        samples,
        out,
        dataset=dataset,
        num_frames=frames,
        seed=seed,
        epochs=epochs,
        decoder=decoder,
        augment=augment,
        accelerator=ctx.acc,
        progress=ctx.progress,
    )
    if not ctx.main:
        return
    if json_output:
        print_json(summary)
        return
    table = Table(title=f"pseudo-labels: {summary['file']}")
    for col in ("question type", "records", "frames", "positive rate"):
        table.add_column(col)
    for qtype, row in summary["by_qtype"].items():
        table.add_row(qtype, str(row["records"]), str(row["frames"]), f"{row['positive_rate']:.3f}")
    table.add_row("all", str(summary["records"]), str(summary["frames"]), f"{summary['positive_rate']:.3f}")
    console.print(table)
    console.print(f"{summary['records_without_positive']} label sets have no positive frame")


def _train_command(
    stage: str,
    *,
    annotations: Path,
    out: Path,
    videos: Path | None,
    video_map: Path | None,
    video_ext: str,
    dataset: str,
    model: str,
    checkpoint: str,
    device: str,
    decoder: str,
    trust_checkpoint: bool,
    resume: bool,
    max_steps: int | None,
    limit: int | None,
    skip_missing: bool,
    workers: int,
    quiet: bool,
    json_output: bool,
    labels: Path | None = None,
    **hp: Any,
) -> None:
    from sevila_tools.training import train_stage

    cfg = _config(stage, dataset=dataset, decoder=decoder, **hp)
    _check_out(out, resume, CHECKPOINT_NAME)
    ctx = _Ctx(model, checkpoint, device, trust_checkpoint, quiet, json_output)
    samples = _samples(ctx, dataset, annotations, videos, video_map, video_ext, stage, limit, skip_missing)
    result = train_stage(
        ctx.rt,
        samples,
        cfg,
        out,
        labels=labels,
        resume=resume,
        max_steps=max_steps,
        accelerator=ctx.acc,
        workers=workers,
        progress=ctx.progress,
        say=ctx.say,
        extra_hparams=_data_hparams(dataset, annotations, videos, limit),
    )
    _print_result(ctx, result)


@guarded
def refine_cmd(
    annotations: AnnotationsOpt,
    out: OutOpt,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Pseudo-label JSONL from `sevila pseudo-label` (default: on the fly)."),
    ] = None,
    init: InitOpt = None,
    videos: VideosOpt = None,
    video_map: VideoMapOpt = None,
    video_ext: VideoExtOpt = ".mp4",
    dataset: DatasetOpt = "nextqa",
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    accum_steps: AccumOpt = None,
    lr: LrOpt = None,
    min_lr: MinLrOpt = None,
    warmup_lr: WarmupLrOpt = None,
    warmup_steps: WarmupOpt = None,
    weight_decay: WdOpt = None,
    beta2: Beta2Opt = None,
    frames: FramesOpt = None,
    seed: SeedOpt = 42,
    limit: LimitOpt = None,
    augment: AugmentOpt = False,
    amp: AmpOpt = True,
    dropout: DropoutOpt = True,
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    resume: ResumeOpt = False,
    max_steps: MaxStepsOpt = None,
    save_every: SaveEveryOpt = 0,
    trained_only: TrainedOnlyOpt = False,
    workers: WorkersOpt = 0,
    skip_missing: SkipMissingOpt = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Reverse chain: train the Localizer on the frozen Answerer's per-frame pseudo-labels (T5 loss on yes/no).

    Recipe: 10 epochs, batch 16, 4 random frames, lr 3e-5, 500 warm-up steps. --init checkpoint (default)
    starts from the loaded Localizer (e.g. the QVHighlights-pretrained one of sevila_pretrained.pth);
    --init answerer-copy starts from the BLIP-2 answerer Q-Former, which is what the official script
    effectively does."""
    _train_command(
        "refine",
        annotations=annotations,
        out=out,
        videos=videos,
        video_map=video_map,
        video_ext=video_ext,
        dataset=dataset,
        model=model,
        checkpoint=checkpoint,
        device=device,
        decoder=decoder,
        trust_checkpoint=trust_checkpoint,
        resume=resume,
        max_steps=max_steps,
        limit=limit,
        skip_missing=skip_missing,
        workers=workers,
        quiet=quiet,
        json_output=json_output,
        labels=labels,
        init=init,
        epochs=epochs,
        batch_size=batch_size,
        accum_steps=accum_steps,
        lr=lr,
        min_lr=min_lr,
        warmup_lr=warmup_lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        beta2=beta2,
        num_frames=frames,
        seed=seed,
        augment=augment,
        amp=amp,
        dropout=dropout,
        save_every=save_every,
        trained_only=trained_only,
    )


@guarded
def finetune_cmd(
    annotations: AnnotationsOpt,
    out: OutOpt,
    keyframes: Annotated[
        int | None, typer.Option("--keyframes", "-k", min=1, help="Keyframes (default 4).")
    ] = None,
    videos: VideosOpt = None,
    video_map: VideoMapOpt = None,
    video_ext: VideoExtOpt = ".mp4",
    dataset: DatasetOpt = "nextqa",
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    accum_steps: AccumOpt = None,
    lr: LrOpt = None,
    min_lr: MinLrOpt = None,
    warmup_lr: WarmupLrOpt = None,
    warmup_steps: WarmupOpt = None,
    weight_decay: WdOpt = None,
    beta2: Beta2Opt = None,
    frames: FramesOpt = None,
    seed: SeedOpt = 42,
    limit: LimitOpt = None,
    augment: AugmentOpt = False,
    amp: AmpOpt = True,
    dropout: DropoutOpt = True,
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    resume: ResumeOpt = False,
    max_steps: MaxStepsOpt = None,
    save_every: SaveEveryOpt = 0,
    trained_only: TrainedOnlyOpt = False,
    workers: WorkersOpt = 0,
    skip_missing: SkipMissingOpt = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Forward chain: fine-tune the Answerer on the frozen Localizer's keyframes (top-k of 32 random frames,
    temporal order; target "Option X"). Recipe: 10 epochs, batch 8, 2 accumulation steps, lr 3e-5,
    1000 warm-up steps."""
    _train_command(
        "finetune",
        annotations=annotations,
        out=out,
        videos=videos,
        video_map=video_map,
        video_ext=video_ext,
        dataset=dataset,
        model=model,
        checkpoint=checkpoint,
        device=device,
        decoder=decoder,
        trust_checkpoint=trust_checkpoint,
        resume=resume,
        max_steps=max_steps,
        limit=limit,
        skip_missing=skip_missing,
        workers=workers,
        quiet=quiet,
        json_output=json_output,
        num_keyframes=keyframes,
        epochs=epochs,
        batch_size=batch_size,
        accum_steps=accum_steps,
        lr=lr,
        min_lr=min_lr,
        warmup_lr=warmup_lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        beta2=beta2,
        num_frames=frames,
        seed=seed,
        augment=augment,
        amp=amp,
        dropout=dropout,
        save_every=save_every,
        trained_only=trained_only,
    )


@guarded
def pretrain_cmd(
    annotations: AnnotationsOpt,
    out: OutOpt,
    init: InitOpt = None,
    videos: VideosOpt = None,
    video_map: VideoMapOpt = None,
    video_ext: VideoExtOpt = ".mp4",
    dataset: DatasetOpt = "qvhighlights",
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    accum_steps: AccumOpt = None,
    lr: LrOpt = None,
    min_lr: MinLrOpt = None,
    warmup_lr: WarmupLrOpt = None,
    warmup_steps: WarmupOpt = None,
    weight_decay: WdOpt = None,
    beta2: Beta2Opt = None,
    frames: FramesOpt = None,
    seed: SeedOpt = 42,
    limit: LimitOpt = None,
    augment: AugmentOpt = False,
    amp: AmpOpt = True,
    dropout: DropoutOpt = True,
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    resume: ResumeOpt = False,
    max_steps: MaxStepsOpt = None,
    save_every: SaveEveryOpt = 0,
    trained_only: TrainedOnlyOpt = False,
    workers: WorkersOpt = 0,
    skip_missing: SkipMissingOpt = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Localizer pre-training on QVHighlights (highlight_*_release.jsonl): a frame is 'yes' iff its time
    idx/fps lies inside any relevant window (inclusive). Recipe: 80 epochs, batch 16, 4 random frames, lr 3e-5,
    1000 warm-up steps; --init answerer-copy (default) starts from the BLIP-2 Q-Former copy."""
    _train_command(
        "pretrain",
        annotations=annotations,
        out=out,
        videos=videos,
        video_map=video_map,
        video_ext=video_ext,
        dataset=dataset,
        model=model,
        checkpoint=checkpoint,
        device=device,
        decoder=decoder,
        trust_checkpoint=trust_checkpoint,
        resume=resume,
        max_steps=max_steps,
        limit=limit,
        skip_missing=skip_missing,
        workers=workers,
        quiet=quiet,
        json_output=json_output,
        init=init,
        epochs=epochs,
        batch_size=batch_size,
        accum_steps=accum_steps,
        lr=lr,
        min_lr=min_lr,
        warmup_lr=warmup_lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        beta2=beta2,
        num_frames=frames,
        seed=seed,
        augment=augment,
        amp=amp,
        dropout=dropout,
        save_every=save_every,
        trained_only=trained_only,
    )


@guarded
def self_refine_cmd(
    annotations: AnnotationsOpt,
    out: OutOpt,
    iterations: Annotated[
        int, typer.Option("--iterations", "-i", min=1, help="Self-refinement iterations.")
    ] = 1,
    init: InitOpt = None,
    videos: VideosOpt = None,
    video_map: VideoMapOpt = None,
    video_ext: VideoExtOpt = ".mp4",
    dataset: DatasetOpt = "nextqa",
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs of both stages.")] = None,
    refine_epochs: Annotated[
        int | None, typer.Option("--refine-epochs", min=1, help="Refine epochs (10).")
    ] = None,
    finetune_epochs: Annotated[
        int | None, typer.Option("--finetune-epochs", min=1, help="Fine-tune epochs (10).")
    ] = None,
    refine_frames: Annotated[
        int | None, typer.Option("--refine-frames", min=1, help="Refine frames (4).")
    ] = None,
    finetune_frames: Annotated[
        int | None, typer.Option("--finetune-frames", min=1, help="Fine-tune candidate frames (32).")
    ] = None,
    keyframes: Annotated[
        int | None, typer.Option("--keyframes", "-k", min=1, help="Keyframes (default 4).")
    ] = None,
    batch_size: BatchOpt = None,
    accum_steps: AccumOpt = None,
    lr: LrOpt = None,
    min_lr: MinLrOpt = None,
    warmup_lr: WarmupLrOpt = None,
    warmup_steps: WarmupOpt = None,
    weight_decay: WdOpt = None,
    beta2: Beta2Opt = None,
    seed: SeedOpt = 42,
    limit: LimitOpt = None,
    val_annotations: Annotated[
        Path | None,
        typer.Option("--val-annotations", help="Report forward-chain accuracy on these per iteration."),
    ] = None,
    augment: AugmentOpt = False,
    amp: AmpOpt = True,
    dropout: DropoutOpt = True,
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    resume: ResumeOpt = False,
    max_steps: MaxStepsOpt = None,
    save_every: SaveEveryOpt = 0,
    trained_only: TrainedOnlyOpt = False,
    workers: WorkersOpt = 0,
    skip_missing: SkipMissingOpt = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """The paper's iterative loop: pseudo-label -> refine the Localizer -> fine-tune the Answerer, N times;
    each iteration's labels, checkpoints and metrics are kept in OUT/iter_i/."""
    from sevila_tools.training import self_refine

    shared = dict(
        dataset=dataset,
        decoder=decoder,
        batch_size=batch_size,
        accum_steps=accum_steps,
        lr=lr,
        min_lr=min_lr,
        warmup_lr=warmup_lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        beta2=beta2,
        seed=seed,
        augment=augment,
        amp=amp,
        dropout=dropout,
        save_every=save_every,
        trained_only=trained_only,
    )
    rcfg = _config("refine", init=init, epochs=refine_epochs or epochs, num_frames=refine_frames, **shared)
    fcfg = _config(
        "finetune",
        epochs=finetune_epochs or epochs,
        num_frames=finetune_frames,
        num_keyframes=keyframes,
        **shared,
    )
    _check_out(out, resume, "iter_1")
    ctx = _Ctx(model, checkpoint, device, trust_checkpoint, quiet, json_output)
    samples = _samples(ctx, dataset, annotations, videos, video_map, video_ext, "refine", limit, skip_missing)
    val = None
    if val_annotations is not None:
        val = _samples(
            ctx, dataset, val_annotations, videos, video_map, video_ext, "finetune", None, skip_missing
        )
    result = self_refine(
        ctx.rt,
        samples,
        out,
        iterations=iterations,
        refine_config=rcfg,
        finetune_config=fcfg,
        resume=resume,
        max_steps=max_steps,
        accelerator=ctx.acc,
        workers=workers,
        progress=ctx.progress,
        say=ctx.say,
        val_samples=val,
        extra_hparams=_data_hparams(dataset, annotations, videos, limit),
    )
    if not ctx.main:
        return
    if json_output:
        print_json(result)
        return
    table = Table(title=f"self-refinement: {out}")
    for col in ("iteration", "positive rate", "refine loss", "finetune loss", "val acc", "checkpoint"):
        table.add_column(col)
    for rec in result["iterations"]:
        val_acc = rec.get("validation", {}).get("accuracy")
        table.add_row(
            str(rec["iteration"]),
            f"{rec['pseudo_labels']['positive_rate']:.3f}",
            f"{rec['refine']['last_loss']:.4f}",
            f"{rec['finetune']['last_loss']:.4f}",
            "" if val_acc is None else f"{val_acc:.4f}",
            str(rec["finetune"]["checkpoint"]),
        )
    console.print(table)
    if not result["complete"]:
        console.print("stopped early: continue with the same command plus --resume")


def _help(fn: Any) -> str:
    """Command help from a docstring: paragraphs kept, line breaks inside a paragraph removed."""
    paragraphs = (fn.__doc__ or "").strip().split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def register(app: typer.Typer) -> None:
    """Add the training commands to the main ``sevila`` app."""
    for name, fn in (
        ("pseudo-label", pseudo_label_cmd),
        ("refine", refine_cmd),
        ("finetune", finetune_cmd),
        ("pretrain-localizer", pretrain_cmd),
        ("self-refine", self_refine_cmd),
    ):
        app.command(name, help=_help(fn))(fn)
