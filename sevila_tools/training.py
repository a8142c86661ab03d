"""Training SeViLA: the reverse chain (pseudo-labels, Localizer refinement), the forward chain (Answerer
fine-tuning), Localizer pre-training on QVHighlights and the paper's iterative self-refinement loop.

Spec: ``sevila.md`` §3 (random training sampling), §9 (objectives), §10 (recipes), §13 (quirks).

Stages (``stage`` name -> trained branch):

=============  ===========  =========================================================================
``pretrain``   localizer    QVHighlights spans -> per-frame ``yes``/``no`` (``t = idx / fps`` inside any
                            relevant window, inclusive); QVHighlights localizer prompt; 4 random frames
``refine``     localizer    reverse chain: the frozen Answerer labels each of 4 random frames ``yes`` iff
                            that frame alone (teacher-forced ``Option``) gives the gold option; labels on
                            the fly (official) or from a ``pseudo-label`` JSONL
``finetune``   answerer     forward chain: the frozen Localizer keeps the top-k of 32 random frames
                            (temporal order); target ``Option X``
=============  ===========  =========================================================================

Recipes (``STAGE_DEFAULTS``; all overridable, recorded in every checkpoint): AdamW betas (0.9, 0.999), weight
decay 0.05 except parameters with ``ndim < 2`` or whose (LAVIS) name contains ``bias``/``ln``/``bn``; learning
rate from :func:`linear_warmup_cosine_lr` set at every iteration; gradient accumulation with the loss **not**
divided by the number of accumulated iterations; bf16 autocast around the trained branch on CUDA (the official
fp16 autocast + GradScaler replaced by bf16, which needs no scaler); T5 stays in the runtime precision.

Determinism and resuming: the data order of epoch ``e`` is a permutation seeded by ``(seed, e)``; the frames
of a question in epoch ``e`` are drawn with a generator seeded by ``(seed, e, crc32(qid))`` (so a
``pseudo-label`` file made with the same seed and epochs holds exactly the frames ``refine`` would draw);
the torch RNG (dropout) is re-seeded at every epoch start by ``(seed, e, rank)``. Checkpoints are written
atomically after every epoch (and every ``save_every`` optimizer steps) with the optimizer, the schedule
position and the torch RNG states of every process, so ``resume=True`` continues a killed run with the same
result as an uninterrupted one.

Checkpoint (``out_dir/checkpoint.pth``, loads with ``torch.load(weights_only=True)`` and through
:func:`sevila_tools.checkpoint.load_sevila_checkpoint`, i.e. ``--checkpoint`` of every command):
``{"format": "sevila_tools", "model": <toolkit-named state dict>, "stage", "trained_branch", "epoch",
"iter_in_epoch", "step", "iteration", "complete", "optimizer", "scheduler_state", "rng", "hparams", "sources"}``.
``model`` holds both Q-Former branches by default (never the ViT or T5): the trained one plus the frozen
partner it was trained with, so that a fine-tuned Answerer keeps *its* Localizer when the file is loaded alone
(an answerer-only file would get a copy of the answerer as Localizer, and a localizer-only file the base
answerer). ``trained_only=True`` stores just the trained branch (half the size).

Localizer initialisation (``init``, ``sevila.md`` §13): ``checkpoint`` keeps the loaded Localizer (with the
default weights, the QVHighlights-pretrained one of ``sevila_pretrained.pth``); ``answerer-copy`` copies the
BLIP-2 answerer Q-Former into the Localizer, which is what the official refinement script effectively does
(its ``load_qformer_loc`` overwrites the localizer) and the default of ``pretrain``. The source is logged and
recorded in ``sources``.

Modes: the trained branch and T5 run in train mode (dropout, as the official ``model.train()``); the ViT,
the frozen branch and T5 while it serves the frozen branch (pseudo-labels, keyframe selection) run in eval
mode. The official code keeps dropout on during those frozen passes too (a quirk: its pseudo-labels and
keyframes are noisy); the toolkit computes them deterministically.

Deviations from the official trainer, all deliberate: bf16 instead of fp16 autocast; accumulated gradients
left over at the end of an epoch are applied at once (LAVIS carries them into the next epoch); the train-time
``RandomResizedCrop`` is off unless ``augment=True`` (speed and determinism); no validation-based "best"
checkpoint (``self_refine`` can report a validation accuracy per iteration instead).

Multi-GPU / multi-node: run the CLI under ``accelerate launch`` (DDP through :class:`accelerate.Accelerator`);
each process takes every ``world``-th question of the epoch order and ``batch_size`` is per process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sevila_tools.checkpoint import TOOLKIT_FORMAT, apply_state_dict, toolkit_to_lavis_key
from sevila_tools.errors import CheckpointError, InputError, VideoError
from sevila_tools.modeling import BRANCH_MODULES, branch_of_key
from sevila_tools.prompts import LETTERS, answer_target, prompts_for, qvhighlights_localizer_prompt
from sevila_tools.runtime import SevilaRuntime

log = logging.getLogger("sevila_tools.training")

STAGES: tuple[str, ...] = ("pretrain", "refine", "finetune")
#: the branch each stage trains
TRAINED_BRANCH: dict[str, str] = {"pretrain": "localizer", "refine": "localizer", "finetune": "answerer"}
#: where the Localizer starts (refine / pretrain): the loaded one, or a copy of the BLIP-2 answerer Q-Former
INIT_MODES: tuple[str, ...] = ("checkpoint", "answerer-copy")
CHECKPOINT_NAME = "checkpoint.pth"
METRICS_NAME = "metrics.jsonl"
RUN_NAME = "run.json"
SUMMARY_NAME = "summary.json"
LABELS_NAME = "pseudo_labels.jsonl"
LABELS_SUMMARY_NAME = "pseudo_labels_summary.json"
CHECKPOINT_FORMAT_VERSION = 1

#: the paper's recipes (``sevila.md`` §10); batch sizes are per process (the authors ran 4 GPUs)
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "pretrain": {
        "epochs": 80,
        "batch_size": 16,
        "accum_steps": 1,
        "warmup_steps": 1000,
        "num_frames": 4,
        "init": "answerer-copy",
        "dataset": "qvhighlights",
    },
    "refine": {
        "epochs": 10,
        "batch_size": 16,
        "accum_steps": 1,
        "warmup_steps": 500,
        "num_frames": 4,
        "init": "checkpoint",
    },
    "finetune": {
        "epochs": 10,
        "batch_size": 8,
        "accum_steps": 2,
        "warmup_steps": 1000,
        "num_frames": 32,
        "num_keyframes": 4,
    },
}
#: hyper-parameters that may change between a run and its resumption
RESUME_EXEMPT = frozenset({"save_every", "decoder"})


# ========================================================================================== config
@dataclass
class TrainConfig:
    """Hyper-parameters of one training stage (see :data:`STAGE_DEFAULTS` for the per-stage recipe)."""

    stage: str
    epochs: int
    batch_size: int
    accum_steps: int
    warmup_steps: int
    num_frames: int
    num_keyframes: int = 4
    lr: float = 3e-5
    min_lr: float = 0.0
    warmup_lr: float = 1e-8
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    seed: int = 42
    init: str = "checkpoint"
    augment: bool = False
    amp: bool = True
    dropout: bool = True
    drop_last: bool = True
    dataset: str = "nextqa"
    decoder: str = "auto"
    save_every: int = 0
    trained_only: bool = False

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise InputError(f"unknown training stage {self.stage!r}; use one of {', '.join(STAGES)}")
        for name in ("epochs", "batch_size", "accum_steps", "num_frames", "num_keyframes"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.warmup_steps < 0 or self.save_every < 0:
            raise InputError("warmup_steps and save_every must be >= 0")
        if not self.lr > 0 or self.min_lr < 0 or self.warmup_lr < 0 or self.weight_decay < 0:
            raise InputError("lr must be > 0; min_lr, warmup_lr and weight_decay must be >= 0")
        if self.init not in INIT_MODES:
            raise InputError(f"unknown localizer init {self.init!r}; use one of {', '.join(INIT_MODES)}")
        if self.stage == "finetune" and self.num_keyframes > self.num_frames:
            raise InputError(
                f"num_keyframes ({self.num_keyframes}) must not exceed num_frames ({self.num_frames})"
            )
        if self.stage == "pretrain" and self.dataset != "qvhighlights":
            raise InputError(f"localizer pre-training uses QVHighlights annotations, not {self.dataset!r}")

    @classmethod
    def for_stage(cls, stage: str, **overrides: Any) -> TrainConfig:
        """The paper's recipe for ``stage`` with the given overrides (``None`` values are ignored)."""
        if stage not in STAGES:
            raise InputError(f"unknown training stage {stage!r}; use one of {', '.join(STAGES)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in overrides if k not in known)
        if unknown:
            raise InputError(f"unknown hyper-parameters: {', '.join(unknown)}")
        values = {**STAGE_DEFAULTS[stage], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(stage=stage, **values)

    @property
    def branch(self) -> str:
        """The branch this stage trains."""
        return TRAINED_BRANCH[self.stage]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON hyper-parameters (stored in checkpoints and ``run.json``)."""
        return asdict(self)


# ======================================================================================== schedule
def linear_warmup_cosine_lr(
    epoch: int, step: int, init_lr: float, min_lr: float, warmup_lr: float, warmup_steps: int, max_epoch: int
) -> float:
    """LAVIS ``LinearWarmupCosineLRScheduler`` (``sevila.md`` §10), called every iteration.

    Epoch 0: ``min(init_lr, warmup_lr + (init_lr - warmup_lr) * step / max(warmup_steps, 1))`` with ``step``
    the iteration within the epoch; epoch ``e >= 1``: ``(init_lr - min_lr) * 0.5 * (1 + cos(pi * e /
    max_epoch)) + min_lr``, constant within the epoch."""
    if epoch == 0:
        return min(init_lr, warmup_lr + (init_lr - warmup_lr) * step / max(warmup_steps, 1))
    return (init_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / max_epoch)) + min_lr


def no_decay(name: str, param: torch.Tensor) -> bool:
    """LAVIS rule: no weight decay for ``ndim < 2`` or a name containing ``bias``, ``ln`` or ``bn``.

    The name test is applied to the LAVIS name of the parameter (``toolkit_to_lavis_key``), so the grouping is
    the official one whatever the toolkit calls the module."""
    lavis = toolkit_to_lavis_key(name)
    return param.ndim < 2 or "bias" in lavis or "ln" in lavis or "bn" in lavis


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups over the parameters that require grad: ``[decayed, not decayed]``."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if no_decay(name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def decay_split(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the trainable parameters with and without weight decay (for reports and tests)."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if no_decay(name, p) else decay).append(name)
    return decay, plain


# ======================================================================================== sampling
def _qid_key(qid: str) -> int:
    return zlib.crc32(str(qid).encode("utf-8"))


def frame_seed(seed: int, epoch: int, qid: str) -> int:
    """Seed of the random frame draw of question ``qid`` in ``epoch`` (shared with pseudo-labels)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), _qid_key(qid)]).generate_state(1)[0])


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """Data order of one epoch: a permutation of ``range(n)`` seeded by ``(seed, epoch)``."""
    return np.random.default_rng([int(seed), int(epoch), 0xDA7A]).permutation(n).tolist()


def rank_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1, drop_last: bool = True
) -> list[list[int]]:
    """Batches (lists of sample positions) of one process in one epoch.

    The epoch order is padded by wrapping around to a multiple of ``world`` (like ``DistributedSampler``) so
    that every process runs the same number of iterations; process ``rank`` takes every ``world``-th item.
    ``drop_last`` drops an incomplete final batch (official), unless that would leave no batch at all."""
    order = epoch_order(n, seed, epoch)
    total = math.ceil(n / world) * world
    order = (order * math.ceil(total / max(n, 1)))[:total]
    mine = order[rank::world]
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def qvh_frame_labels(
    frame_indices: Sequence[int], fps: float, windows: Sequence[Sequence[float]] | None
) -> list[str]:
    """QVHighlights span -> frame labels (``sevila.md`` §9.3): ``yes`` iff ``t = idx / fps`` lies in any
    relevant window ``[st, ed]`` (both ends inclusive); no windows (test split) -> all ``no``."""
    out = []
    for idx in frame_indices:
        t = idx / fps
        out.append("yes" if any(w[0] <= t <= w[1] for w in (windows or [])) else "no")
    return out


def random_resized_crop(
    frames: np.ndarray,
    rng: np.random.Generator,
    size: int = 224,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """The official train transform ``RandomResizedCropVideo(224, scale=(0.5, 1.0), bicubic)``: one crop for
    all frames of a clip (torchvision's parameter rule), resized back with bicubic interpolation; uint8
    in and out."""
    t, h, w, _ = frames.shape
    area = h * w
    top, left, ch, cw = 0, 0, h, w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw_, ch_ = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw_ <= w and 0 < ch_ <= h:
            top, left, ch, cw = int(rng.integers(0, h - ch_ + 1)), int(rng.integers(0, w - cw_ + 1)), ch_, cw_
            break
    x = torch.from_numpy(np.ascontiguousarray(frames[:, top : top + ch, left : left + cw])).permute(
        0, 3, 1, 2
    )
    x = nn.functional.interpolate(x.float(), size=(size, size), mode="bicubic", align_corners=False)
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# ================================================================================ samples / labels
def usable_samples(samples: Sequence[Any], stage: str, limit: int | None = None) -> tuple[list[Any], int]:
    """Samples a stage can train on (QA stages need a gold answer and 2-5 options), then the first ``limit``.

    Returns ``(samples, number dropped for lack of an answer/options)``."""
    kept, dropped = [], 0
    for s in samples:
        if stage != "pretrain" and (s.answer is None or not 2 <= len(s.options) <= len(LETTERS)):
            dropped += 1
            continue
        kept.append(s)
    if limit is not None:
        kept = kept[: max(0, int(limit))]
    return kept, dropped


@dataclass
class LabelSet:
    """Pseudo-labels of one question's frames for one epoch (a record of a ``pseudo-label`` JSONL)."""

    frame_indices: list[int]
    labels: list[str]
    epoch: int | None = None


def read_labels(path: str | Path) -> dict[str, list[LabelSet]]:
    """Read a pseudo-label JSONL: one record per question (and epoch) with ``qid``, ``frame_indices`` and
    ``labels`` (``"yes"``/``"no"`` per frame); ``epoch`` optional. Every record must label the same number
    of frames."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file not found: {path}")
    out: dict[str, list[LabelSet]] = {}
    lengths = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: invalid JSON line ({exc.msg})") from None
        if not isinstance(rec, dict) or not {"qid", "frame_indices", "labels"} <= set(rec):
            raise InputError(f"{path}:{lineno}: a label record needs qid, frame_indices and labels")
        idx, labels = rec["frame_indices"], rec["labels"]
        if (
            not isinstance(idx, list)
            or not isinstance(labels, list)
            or not idx
            or len(idx) != len(labels)
            or any(lab not in ("yes", "no") for lab in labels)
            or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in idx)
        ):
            raise InputError(
                f"{path}:{lineno}: frame_indices must be frame numbers and labels 'yes'/'no', equal length"
            )
        lengths.add(len(idx))
        epoch = rec.get("epoch")
        out.setdefault(str(rec["qid"]), []).append(
            LabelSet([int(i) for i in idx], list(labels), None if epoch is None else int(epoch))
        )
    if not out:
        raise InputError(f"{path}: no label records")
    if len(lengths) > 1:
        raise InputError(
            f"{path}: records label different numbers of frames ({sorted(lengths)}); use one --frames"
        )
    for sets in out.values():
        sets.sort(key=lambda s: -1 if s.epoch is None else s.epoch)
    return out


def labels_for_epoch(sets: Sequence[LabelSet], epoch: int) -> LabelSet:
    """The label set of ``epoch``: the record made for that epoch, else record ``epoch % len(sets)``."""
    for s in sets:
        if s.epoch == epoch:
            return s
    return sets[epoch % len(sets)]


# ============================================================================================ data
@dataclass
class Item:
    """One question's training input for one epoch."""

    position: int
    qid: str
    frames: np.ndarray  # (T, 224, 224, 3) uint8
    frame_indices: list[int]
    fps: float | None
    labels: list[str] | None = None


def load_item(
    sample: Any,
    position: int,
    epoch: int,
    *,
    stage: str,
    num_frames: int,
    seed: int,
    decoder: str = "auto",
    augment: bool = False,
    labels: Mapping[str, Sequence[LabelSet]] | None = None,
) -> Item:
    """Decode the frames of one question for one epoch (random, one per segment; or those of a label file)."""
    from sevila_tools.video import read_frames, sample_frames

    try:
        if labels is not None:
            ls = labels_for_epoch(labels[sample.qid], epoch)
            frames, _ = read_frames(sample.video, ls.frame_indices, decoder=decoder, size=224)  # type: ignore[arg-type]
            indices, fps, item_labels = list(ls.frame_indices), None, list(ls.labels)
        else:
            sf = sample_frames(
                sample.video,
                num_frames,
                start=sample.start,
                end=sample.end,
                decoder=decoder,  # type: ignore[arg-type]
                mode="random",
                seed=frame_seed(seed, epoch, sample.qid),
            )
            frames, indices, fps, item_labels = sf.frames, list(sf.indices), sf.fps, None
            if stage == "pretrain":
                item_labels = qvh_frame_labels(indices, fps, sample.windows)
    except (VideoError, InputError) as exc:
        raise type(exc)(f"question {sample.qid} ({sample.video}): {exc}") from exc
    if augment:
        frames = random_resized_crop(
            frames, np.random.default_rng([int(seed), int(epoch), _qid_key(sample.qid), 1])
        )
    return Item(position, str(sample.qid), frames, indices, fps, item_labels)


class _EpochData(torch.utils.data.Dataset):
    """Map-style dataset of one epoch (items are decoded in DataLoader workers when ``workers > 0``)."""

    def __init__(
        self,
        samples: Sequence[Any],
        epoch: int,
        cfg: TrainConfig,
        labels: Mapping[str, Sequence[LabelSet]] | None,
    ) -> None:
        self.samples, self.epoch, self.cfg, self.labels = samples, epoch, cfg, labels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Item:
        c = self.cfg
        return load_item(
            self.samples[i],
            i,
            self.epoch,
            stage=c.stage,
            num_frames=c.num_frames,
            seed=c.seed,
            decoder=c.decoder,
            augment=c.augment,
            labels=self.labels,
        )


def _collate(items: list[Item]) -> list[Item]:
    return items


# =================================================================================== model helpers
@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Temporarily put modules in eval mode (restores each submodule's previous mode)."""
    saved = [(m, m.training) for mod in modules for m in mod.modules()]
    for mod in modules:
        mod.eval()
    try:
        yield
    finally:
        for m, mode in saved:
            m.training = mode


def set_train_modes(model: nn.Module, branch: str, dropout: bool = True) -> None:
    """Train mode (dropout) for the trained branch and T5 when ``dropout``; everything else in eval mode."""
    model.eval()
    if dropout:
        for name in BRANCH_MODULES[branch]:
            mod = getattr(model, name)
            if isinstance(mod, nn.Module):
                mod.train()
        model.language_model.train()


def _amp(runtime: SevilaRuntime, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and runtime.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pseudo_label_predictions(
    runtime: SevilaRuntime, raw: torch.Tensor, qa_text: str, num_options: int
) -> list[int]:
    """Reverse chain (``sevila.md`` §9.2): the frozen Answerer's teacher-forced single-frame prediction for
    each frame of one question, raw features ``(T, L, D)``; computed in eval mode."""
    m = runtime.model
    with eval_mode(m.ln_vision, m.qformer, m.language_projection, m.language_model), torch.no_grad():
        return runtime.frame_answers(raw[None], [qa_text], num_options, "teacher_forced").predictions


def select_keyframes(
    runtime: SevilaRuntime, raw: torch.Tensor, loc_texts: list[str], k: int
) -> list[list[int]]:
    """Frozen-Localizer keyframes for raw features ``(B, T, L, D)``: top-k by the raw yes-logit (ties -> lower
    position), in temporal order (``sevila.md`` §6); eval mode."""
    from sevila_tools.selectors.base import topk_sorted

    m = runtime.model
    with (
        eval_mode(m.ln_vision_loc, m.qformer_loc, m.language_projection_loc, m.language_model),
        torch.no_grad(),
    ):
        yes, _ = runtime.localizer_logits(raw, loc_texts)
    return [topk_sorted(row, k) for row in yes.float().tolist()]


class StageLoss(nn.Module):
    """The per-batch loss of a stage. Holds the SeViLA model as a submodule so DDP sees its parameters."""

    def __init__(self, runtime: SevilaRuntime, cfg: TrainConfig, samples: Sequence[Any]) -> None:
        super().__init__()
        self.model = runtime.model
        self.__dict__["runtime"] = runtime  # not a submodule
        self.cfg = cfg
        self.samples = samples
        self.last_positive_rate: float | None = None

    def forward(self, batch: list[Item]) -> torch.Tensor:
        rt, cfg = self.runtime, self.cfg
        b, t = len(batch), batch[0].frames.shape[0]
        if any(it.frames.shape[0] != t for it in batch):
            raise InputError("all questions of a batch must have the same number of frames")
        raw = rt.vit(np.concatenate([it.frames for it in batch]))  # frozen ViT, no grad
        raw = raw.view(b, t, *raw.shape[1:])
        samples = [self.samples[it.position] for it in batch]
        if cfg.stage == "pretrain":
            labels = [lab for it in batch for lab in (it.labels or [])]
            texts = [qvhighlights_localizer_prompt(s.question) for s in samples]
            self.last_positive_rate = labels.count("yes") / len(labels)
            with _amp(rt, cfg.amp):
                return rt.localizer_loss(raw, texts, labels)
        loc_texts, qa_texts = zip(
            *(prompts_for(cfg.dataset, s.question, list(s.options)) for s in samples), strict=True
        )
        if cfg.stage == "refine":
            if batch[0].labels is not None:
                labels = [lab for it in batch for lab in (it.labels or [])]
            else:  # on the fly, as the official reverse chain
                labels = []
                for i, s in enumerate(samples):
                    preds = pseudo_label_predictions(rt, raw[i], qa_texts[i], len(s.options))
                    labels += ["yes" if p == s.answer else "no" for p in preds]
            self.last_positive_rate = labels.count("yes") / len(labels)
            with _amp(rt, cfg.amp):
                return rt.localizer_loss(raw, list(loc_texts), labels)
        positions = select_keyframes(rt, raw, list(loc_texts), cfg.num_keyframes)
        raw_kf = torch.stack([raw[i, pos] for i, pos in enumerate(positions)])
        targets = [answer_target(s.answer) for s in samples]
        with _amp(rt, cfg.amp):
            return rt.answerer_loss(raw_kf, list(qa_texts), targets)


# ===================================================================================== checkpoints
def branch_state_dict(model: nn.Module, branches: Sequence[str]) -> dict[str, torch.Tensor]:
    """CPU copies of the state-dict entries of the given branches (toolkit names)."""
    return {
        k: v.detach().to("cpu", copy=True)
        for k, v in model.state_dict().items()
        if branch_of_key(k) in branches
    }


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`train_stage` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - one-line user error
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != TOOLKIT_FORMAT or "hparams" not in obj:
        raise CheckpointError(f"{path} is not a training checkpoint written by sevila_tools")
    return obj


# ============================================================================================ runs
@dataclass
class TrainResult:
    """What a training stage did."""

    stage: str
    out_dir: str
    checkpoint: str
    complete: bool
    epochs_completed: int
    steps: int  # optimizer updates
    iterations: int
    epoch_losses: list[float] = field(default_factory=list)
    first_loss: float | None = None
    last_loss: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LocalAccelerator:
    """Single-process stand-in for :class:`accelerate.Accelerator` (no global state, no process group)."""

    process_index = 0
    num_processes = 1
    is_main_process = True

    def __init__(self, device: str | torch.device = "cpu") -> None:
        from sevila_tools.loading import resolve_device

        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))

    def wait_for_everyone(self) -> None:
        """Nothing to wait for."""


def make_accelerator(device: str | torch.device = "auto") -> Any:
    """The process's accelerator: a real :class:`accelerate.Accelerator` when launched with several processes
    (``accelerate launch``, ``torchrun``: ``WORLD_SIZE > 1``; ``cpu`` -> gloo), else a
    :class:`LocalAccelerator`.
    Mixed precision is handled by the trainer, never by accelerate."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return LocalAccelerator(device)
    from accelerate import Accelerator

    dev = str(device)
    cpu = dev == "cpu" or (dev == "auto" and not torch.cuda.is_available())
    return Accelerator(cpu=cpu, mixed_precision="no")


def device_string(device: torch.device) -> str:
    """Device string for :func:`sevila_tools.loading.load_runtime` from an accelerator device."""
    return "cpu" if device.type == "cpu" else str(device)


def _say_default(msg: str) -> None:
    log.info(msg)


def _versions() -> dict[str, str]:
    import transformers

    from sevila_tools import __version__

    return {
        "sevila_tools": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


class _TruncationOnce(logging.Filter):
    """Let each distinct runtime warning through once (the truncation warning would repeat every epoch)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


@contextlib.contextmanager
def _quiet_repeats() -> Iterator[None]:
    logger = logging.getLogger("sevila_tools.runtime")
    flt = _TruncationOnce()
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def _progress(enabled: bool) -> Any:
    """A rich progress bar on stderr: description, bar, done/total, an info field (loss, lr), rate, ETA."""
    from sevila_tools.progress import make_progress

    return make_progress(enabled, unit="it", info=True)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed the torch RNG (dropout) for one epoch of one process."""
    torch.manual_seed(
        int(np.random.SeedSequence([int(seed), int(epoch), int(rank), 0x70C4]).generate_state(1)[0])
    )


def _gather(accelerator: Any, obj: Any) -> list[Any]:
    if accelerator.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


def _read_metrics(path: Path, max_iteration: int | None = None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if max_iteration is None or r["step"] <= max_iteration]


def _epoch_losses(rows: list[dict[str, Any]]) -> list[float]:
    per: dict[int, list[float]] = {}
    for r in rows:
        per.setdefault(int(r["epoch"]), []).append(float(r["loss"]))
    return [sum(v) / len(v) for _, v in sorted(per.items())]


def _check_resume(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}"
        for k in sorted(set(saved) | set(current))
        if k not in RESUME_EXEMPT and saved.get(k) != current.get(k)
    ]
    if diffs:
        raise InputError(
            f"cannot resume {path}: settings differ ({'; '.join(diffs[:4])}); rerun with the original ones"
        )


def _result_from_state(
    state: Mapping[str, Any], out: Path, ckpt: Path, rows: list[dict[str, Any]]
) -> TrainResult:
    return TrainResult(
        stage=str(state["stage"]),
        out_dir=str(out),
        checkpoint=str(ckpt),
        complete=bool(state["complete"]),
        epochs_completed=int(state["epoch"]),
        steps=int(state["step"]),
        iterations=int(state["iteration"]),
        epoch_losses=_epoch_losses(rows),
        first_loss=rows[0]["loss"] if rows else None,
        last_loss=rows[-1]["loss"] if rows else None,
        sources=dict(state.get("sources", {})),
        hparams=dict(state["hparams"]),
    )


def train_stage(
    runtime: SevilaRuntime,
    samples: Sequence[Any],
    config: TrainConfig,
    out_dir: str | Path,
    *,
    labels: str | Path | Mapping[str, Sequence[LabelSet]] | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    accelerator: Any | None = None,
    workers: int = 0,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
    extra_hparams: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train one stage in place on ``runtime.model`` and write ``out_dir/checkpoint.pth`` + ``metrics.jsonl``.

    Args:
        runtime: the loaded model (its device must be the accelerator's device under multi-process runs).
        samples: :class:`sevila_tools.eval.datasets.Sample` list (filter with :func:`usable_samples` first).
        config: the stage's hyper-parameters (:meth:`TrainConfig.for_stage`).
        out_dir: run folder; must not hold a checkpoint unless ``resume``.
        labels: ``refine`` only: a pseudo-label JSONL (or its parsed form); ``None`` = labels on the fly.
        resume: continue from ``out_dir/checkpoint.pth`` (same settings required).
        max_steps: stop (with a checkpoint) after this many optimizer updates in total; the schedule still
            follows ``config.epochs``.
        accelerator: an :class:`accelerate.Accelerator` (created for the runtime's device when omitted).
        workers: DataLoader worker processes decoding videos.
        progress: show a rich progress bar on stderr (main process only).
        say: receives one-line status messages (default: the module logger).
        extra_hparams: recorded with the hyper-parameters (e.g. annotation paths); compared on resume.

    Returns:
        :class:`TrainResult`. Afterwards the model is in eval mode with every parameter frozen again.
    """
    say = say or _say_default
    cfg = config
    model = runtime.model
    acc = accelerator if accelerator is not None else make_accelerator(runtime.device)
    rank, world, main = acc.process_index, acc.num_processes, acc.is_main_process
    if not samples:
        raise InputError(f"no usable questions to train the {cfg.stage} stage on")
    if labels is not None and cfg.stage != "refine":
        raise InputError("a labels file is only used by the refine stage")
    label_map: Mapping[str, Sequence[LabelSet]] | None = None
    label_source = "on the fly (frozen answerer)" if cfg.stage == "refine" else None
    if labels is not None:
        label_map = read_labels(labels) if isinstance(labels, (str, Path)) else labels
        label_source = str(labels) if isinstance(labels, (str, Path)) else "in-memory labels"
        missing = [s.qid for s in samples if s.qid not in label_map]
        if missing:
            raise InputError(
                f"{len(missing)} of {len(samples)} questions have no pseudo-labels "
                f"(first: {', '.join(map(str, missing[:3]))}); label them or pass --limit"
            )
    out = Path(out_dir)
    ckpt_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    hparams = {
        **cfg.to_dict(),
        "model": runtime.info.get("model"),
        "start_checkpoint": runtime.info.get("checkpoint"),
        "world_size": world,
        "num_samples": len(samples),
        "labels": label_source,
        **dict(extra_hparams or {}),
    }
    state: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.is_file():
            raise InputError(f"nothing to resume: {ckpt_path} does not exist")
        state = read_training_checkpoint(ckpt_path)
        _check_resume(state["hparams"], hparams, ckpt_path)
    elif ckpt_path.exists():
        raise InputError(
            f"{out} already holds a training run ({CHECKPOINT_NAME}); pass --resume or use another --out"
        )
    branch = cfg.branch
    sources = dict(runtime.info.get("sources", {}))

    if state is not None:
        sd = dict(state["model"])
        parts = sorted({branch_of_key(k) for k in sd} - {None})  # type: ignore[arg-type]
        apply_state_dict(model, sd, parts)
        sources = dict(state.get("sources", sources))
        if state.get("complete"):
            say(f"{ckpt_path} is already complete ({state['epoch']} epochs); nothing to do")
            model.eval()
            model.freeze(())
            return _result_from_state(state, out, ckpt_path, _read_metrics(metrics_path))
        say(
            f"resuming {cfg.stage} from {ckpt_path}: epoch {state['epoch']}, "
            f"iteration {state['iter_in_epoch']} "
            f"of it, {state['step']} optimizer steps done"
        )
    elif branch == "localizer":
        if cfg.init == "answerer-copy":
            model.copy_answerer_to_localizer()
            sources["localizer"] = f"copy of the answerer ({sources.get('answerer', 'base')})"
        say(f"localizer initialised from: {sources.get('localizer', 'unknown')} (--init {cfg.init})")
    else:
        say(f"answerer starts from: {sources.get('answerer')}; frozen localizer: {sources.get('localizer')}")
    if label_source:
        say(f"pseudo-labels: {label_source}")

    model.freeze((branch,))
    opt = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps
    )
    epoch0, skip, iteration, update = 0, 0, 0, 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        epoch0, skip = int(state["epoch"]), int(state["iter_in_epoch"])
        iteration, update = int(state["iteration"]), int(state["step"])
    loss_module = StageLoss(runtime, cfg, samples)
    net: nn.Module = loss_module
    if world > 1:
        ignore = [f"model.{k}" for k in model.state_dict() if branch_of_key(k) != branch]
        with contextlib.suppress(AttributeError):
            torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                loss_module, ignore
            )
        net = acc.prepare(loss_module)

    if main:
        out.mkdir(parents=True, exist_ok=True)
        rows = _read_metrics(metrics_path, iteration) if state is not None else []
        _atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
        _atomic_write_text(
            out / RUN_NAME,
            json.dumps(
                {
                    "stage": cfg.stage,
                    "hparams": hparams,
                    "sources": sources,
                    "versions": _versions(),
                    "trained_branch": branch,
                    "resumed_from_step": update if state else None,
                },
                indent=2,
                default=str,
            ),
        )
    acc.wait_for_everyone()
    saved_branches = [branch] if cfg.trained_only else ["answerer", "localizer"]

    last: dict[str, Any] = {k: v for k, v in (state or {}).items() if k not in ("model", "optimizer", "rng")}

    def save(epoch: int, iter_in_epoch: int, complete: bool) -> None:
        last.update(
            stage=cfg.stage,
            epoch=epoch,
            step=update,
            iteration=iteration,
            complete=complete,
            sources=sources,
            hparams=hparams,
        )
        rngs = _gather(acc, _rng_state())
        if main:
            atomic_torch_save(
                {
                    "format": TOOLKIT_FORMAT,
                    "format_version": CHECKPOINT_FORMAT_VERSION,
                    "model": branch_state_dict(model, saved_branches),
                    "stage": cfg.stage,
                    "trained_branch": branch,
                    "epoch": epoch,
                    "iter_in_epoch": iter_in_epoch,
                    "step": update,
                    "iteration": iteration,
                    "complete": complete,
                    "optimizer": opt.state_dict(),
                    "scheduler_state": {
                        "name": "linear_warmup_cosine_lr",
                        "epoch": epoch,
                        "iter_in_epoch": iter_in_epoch,
                        "lr": float(opt.param_groups[0]["lr"]),
                    },
                    "rng": {"per_rank": rngs},
                    "hparams": hparams,
                    "sources": sources,
                },
                ckpt_path,
            )
        acc.wait_for_everyone()

    stopped = False
    bar = _progress(progress and main)
    try:
        with bar, _quiet_repeats():
            for epoch in range(epoch0, cfg.epochs):
                batches = rank_batches(
                    len(samples), cfg.batch_size, cfg.seed, epoch, rank, world, cfg.drop_last
                )
                n_iter = len(batches)
                if skip and state is not None:
                    _set_rng_state(state["rng"]["per_rank"][rank])
                else:
                    seed_epoch(cfg.seed, epoch, rank)
                loader = torch.utils.data.DataLoader(
                    _EpochData(samples, epoch, cfg, label_map),
                    batch_sampler=batches[skip:],
                    collate_fn=_collate,
                    num_workers=workers,
                    generator=torch.Generator().manual_seed(0),
                )
                task = bar.add_task(
                    f"{cfg.stage} epoch {epoch + 1}/{cfg.epochs}", total=n_iter, completed=skip, info=""
                )
                set_train_modes(model, branch, cfg.dropout)
                opt.zero_grad(set_to_none=True)
                done = skip
                for i, batch in enumerate(loader, start=skip):
                    lr = linear_warmup_cosine_lr(
                        epoch, i, cfg.lr, cfg.min_lr, cfg.warmup_lr, cfg.warmup_steps, cfg.epochs
                    )
                    for g in opt.param_groups:
                        g["lr"] = lr
                    stepping = (i + 1) % cfg.accum_steps == 0 or i == n_iter - 1
                    sync = acc.no_sync(net) if world > 1 and not stepping else contextlib.nullcontext()
                    with sync:
                        loss = net(batch)
                        loss.backward()  # official: not divided by accum_steps
                    if stepping:
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                        update += 1
                    iteration += 1
                    done = i + 1
                    pos = loss_module.last_positive_rate
                    stats = torch.stack([loss.detach().float(), torch.tensor(-1.0 if pos is None else pos)])
                    if world > 1:  # mean over the processes
                        stats = acc.reduce(stats.to(acc.device), reduction="mean").cpu()
                    row = {
                        "step": iteration,
                        "epoch": epoch,
                        "iter": i,
                        "update": update,
                        "loss": float(stats[0]),
                        "lr": lr,
                    }
                    if pos is not None:
                        row["positive_rate"] = float(stats[1])
                    if main:
                        with open(metrics_path, "a", encoding="utf-8") as f:
                            f.write(json.dumps(row) + "\n")
                    bar.update(task, advance=1, info=f"loss {row['loss']:.4f}  lr {lr:.2e}")
                    stopped = max_steps is not None and stepping and update >= max_steps
                    if (
                        stepping
                        and i < n_iter - 1
                        and (stopped or (cfg.save_every and update % cfg.save_every == 0))
                    ):
                        save(epoch, i + 1, False)
                    if stopped:
                        break
                if done == n_iter:
                    save(epoch + 1, 0, epoch + 1 == cfg.epochs)
                skip = 0
                if stopped:
                    break
    finally:
        model.eval()
        model.freeze(())
    if stopped:
        say(f"stopped after {update} optimizer steps (max_steps); continue with resume")
    result = _result_from_state(last, out, ckpt_path, _read_metrics(metrics_path))
    if main:
        _atomic_write_text(out / SUMMARY_NAME, json.dumps(result.to_dict(), indent=2, default=str))
    acc.wait_for_everyone()
    return result


# =================================================================================== pseudo-labels
def pseudo_label(
    runtime: SevilaRuntime,
    samples: Sequence[Any],
    out_dir: str | Path,
    *,
    dataset: str = "nextqa",
    num_frames: int = 4,
    seed: int = 42,
    epochs: int = 1,
    decoder: str = "auto",
    augment: bool = False,
    accelerator: Any | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the reverse chain's labeller over a dataset and write ``out_dir/pseudo_labels.jsonl`` + a summary.

    For every question and epoch ``e < epochs``: ``num_frames`` random frames (one per segment, drawn exactly
    as ``refine`` draws them in epoch ``e`` with the same ``seed``), the frozen Answerer's teacher-forced
    single-frame prediction per frame, label ``yes`` iff it equals the gold option. Returns the summary
    (positive rate overall and per question type)."""
    acc = accelerator if accelerator is not None else make_accelerator(runtime.device)
    rank, world = acc.process_index, acc.num_processes
    samples, _ = usable_samples(samples, "refine")
    if not samples:
        raise InputError("no questions with a gold answer and 2-5 options to pseudo-label")
    out = Path(out_dir)
    jobs = [(e, p) for e in range(epochs) for p in range(len(samples))][rank::world]
    records = []
    runtime.model.eval()
    with _progress(progress and acc.is_main_process) as bar, _quiet_repeats():
        task = bar.add_task("pseudo-label", total=len(jobs), info="")
        for epoch, pos in jobs:
            s = samples[pos]
            item = load_item(
                s,
                pos,
                epoch,
                stage="refine",
                num_frames=num_frames,
                seed=seed,
                decoder=decoder,
                augment=augment,
            )
            raw = runtime.vit(item.frames)
            _, qa_text = prompts_for(dataset, s.question, list(s.options))
            preds = pseudo_label_predictions(runtime, raw, qa_text, len(s.options))
            records.append(
                {
                    "qid": s.qid,
                    "video": s.video,
                    "qtype": s.qtype,
                    "epoch": epoch,
                    "seed": seed,
                    "answer": s.answer,
                    "frame_indices": item.frame_indices,
                    "times": [i / item.fps for i in item.frame_indices] if item.fps else None,
                    "predictions": preds,
                    "labels": ["yes" if p == s.answer else "no" for p in preds],
                    "_order": (epoch, pos),
                }
            )
            bar.update(task, advance=1)
    gathered = [r for part in _gather(acc, records) for r in part] if world > 1 else records
    gathered.sort(key=lambda r: r["_order"])
    summary = summarize_labels(gathered)
    summary.update(
        file=str(out / LABELS_NAME),
        epochs=epochs,
        seed=seed,
        frames_per_question=num_frames,
        dataset=dataset,
        model=runtime.info.get("model"),
        checkpoint=runtime.info.get("checkpoint"),
        sources=runtime.info.get("sources"),
    )
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps({k: v for k, v in r.items() if k != "_order"}) + "\n" for r in gathered)
        _atomic_write_text(out / LABELS_NAME, lines)
        _atomic_write_text(out / LABELS_SUMMARY_NAME, json.dumps(summary, indent=2, default=str))
    acc.wait_for_everyone()
    return summary


def summarize_labels(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Positive rate overall and per question type of pseudo-label records."""
    by: dict[str, list[int]] = {}
    frames = positives = no_positive = 0
    for r in records:
        n_yes = list(r["labels"]).count("yes")
        frames += len(r["labels"])
        positives += n_yes
        no_positive += n_yes == 0
        acc = by.setdefault(str(r.get("qtype")), [0, 0, 0])
        acc[0] += 1
        acc[1] += len(r["labels"])
        acc[2] += n_yes
    return {
        "records": len(records),
        "questions": len({r["qid"] for r in records}),
        "frames": frames,
        "positive_rate": positives / frames if frames else 0.0,
        "records_without_positive": no_positive,
        "by_qtype": {
            k: {"records": v[0], "frames": v[1], "positive_rate": v[2] / v[1] if v[1] else 0.0}
            for k, v in sorted(by.items())
        },
    }


# ====================================================================================== evaluation
def evaluate_qa(
    runtime: SevilaRuntime,
    samples: Sequence[Any],
    *,
    dataset: str = "nextqa",
    num_frames: int = 32,
    num_keyframes: int = 4,
    decoder: str = "auto",
    accelerator: Any | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Quick forward-chain accuracy (uniform candidates, Localizer top-k, faithful decoding), per question
    type; used by :func:`self_refine` for its per-iteration validation."""
    from sevila_tools.chain import SevilaChain
    from sevila_tools.schemas import ForwardRequest

    acc = accelerator if accelerator is not None else make_accelerator(runtime.device)
    samples, _ = usable_samples(samples, "finetune")
    mine = list(range(len(samples)))[acc.process_index :: acc.num_processes]
    chain = SevilaChain(runtime, decoder=decoder, dataset=dataset)
    results = []
    runtime.model.eval()
    with _progress(progress and acc.is_main_process) as bar, _quiet_repeats():
        task = bar.add_task("validate", total=len(mine), info="")
        for pos in mine:
            s = samples[pos]
            req = ForwardRequest(
                video=s.video,
                question=s.question,
                options=list(s.options),
                num_frames=num_frames,
                num_keyframes=min(num_keyframes, num_frames),
                start=s.start,
                end=s.end,
            )
            pred = chain.forward(req).answer.answer_index
            results.append((str(s.qtype), pred == s.answer))
            bar.update(task, advance=1)
    allres = [r for part in _gather(acc, results) for r in part] if acc.num_processes > 1 else results
    by: dict[str, list[int]] = {}
    for qt, ok in allres:
        by.setdefault(qt, [0, 0])
        by[qt][0] += 1
        by[qt][1] += int(ok)
    n = len(allres)
    return {
        "questions": n,
        "accuracy": sum(ok for _, ok in allres) / n if n else 0.0,
        "by_qtype": {k: v[1] / v[0] for k, v in sorted(by.items())},
    }


# ================================================================================= self-refinement
def self_refine(
    runtime: SevilaRuntime,
    samples: Sequence[Any],
    out_dir: str | Path,
    *,
    iterations: int,
    refine_config: TrainConfig,
    finetune_config: TrainConfig,
    resume: bool = False,
    max_steps: int | None = None,
    accelerator: Any | None = None,
    workers: int = 0,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
    val_samples: Sequence[Any] | None = None,
    extra_hparams: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The paper's iterative loop: for i = 1..iterations, pseudo-label (current Answerer) -> refine the
    Localizer -> fine-tune the Answerer with the refined Localizer, everything kept under ``out_dir/iter_i/``
    (``pseudo_labels.jsonl``, ``refine/``, ``finetune/``, ``summary.json``).

    Iteration ``i`` uses seed ``seed + i - 1``; its pseudo-labels are made for all refine epochs with the
    refine seed, i.e. exactly the frames and labels the on-the-fly reverse chain would use. Only iteration 1
    applies ``refine_config.init``; later iterations continue from the current Localizer. ``resume`` skips
    completed parts (loading their weights) and resumes the interrupted one. ``max_steps`` applies to each
    stage."""
    say = say or _say_default
    if iterations < 1:
        raise InputError("iterations must be >= 1")
    if refine_config.stage != "refine" or finetune_config.stage != "finetune":
        raise InputError("self_refine needs a refine config and a finetune config")
    acc = accelerator if accelerator is not None else make_accelerator(runtime.device)
    out = Path(out_dir)
    if not resume and acc.is_main_process and (out / "iter_1").exists():
        raise InputError(f"{out} already holds a self-refinement run; pass --resume or use another --out")
    samples, _ = usable_samples(samples, "refine")
    summaries = []
    for it in range(1, iterations + 1):
        it_dir = out / f"iter_{it}"
        rcfg = replace(
            refine_config,
            seed=refine_config.seed + it - 1,
            init=refine_config.init if it == 1 else "checkpoint",
        )
        fcfg = replace(finetune_config, seed=finetune_config.seed + it - 1)
        say(f"iteration {it}/{iterations}: pseudo-labels -> refine localizer -> fine-tune answerer")
        summary_file = it_dir / LABELS_SUMMARY_NAME
        if resume and summary_file.is_file():
            labels_summary = json.loads(summary_file.read_text())
            say(f"iteration {it}: pseudo-labels already in {it_dir / LABELS_NAME}")
        else:
            labels_summary = pseudo_label(
                runtime,
                samples,
                it_dir,
                dataset=rcfg.dataset,
                num_frames=rcfg.num_frames,
                seed=rcfg.seed,
                epochs=rcfg.epochs,
                decoder=rcfg.decoder,
                accelerator=acc,
                progress=progress,
            )
        stages = {}
        common = dict(
            accelerator=acc,
            workers=workers,
            progress=progress,
            say=say,
            max_steps=max_steps,
            extra_hparams={**dict(extra_hparams or {}), "iteration": it},
        )
        for name, cfg, lab in (("refine", rcfg, it_dir / LABELS_NAME), ("finetune", fcfg, None)):
            stage_dir = it_dir / name
            res = train_stage(
                runtime,
                samples,
                cfg,
                stage_dir,
                labels=lab,
                resume=resume and (stage_dir / CHECKPOINT_NAME).is_file(),
                **common,
            )
            stages[name] = res.to_dict()
            if not res.complete:
                say(f"iteration {it} {name} stopped before the end; rerun with --resume")
                return {"iterations": summaries, "complete": False}
        record = {
            "iteration": it,
            "pseudo_labels": labels_summary,
            "refine": {
                k: stages["refine"][k] for k in ("checkpoint", "epoch_losses", "first_loss", "last_loss")
            },
            "finetune": {
                k: stages["finetune"][k] for k in ("checkpoint", "epoch_losses", "first_loss", "last_loss")
            },
        }
        if val_samples:
            record["validation"] = evaluate_qa(
                runtime,
                val_samples,
                dataset=fcfg.dataset,
                decoder=fcfg.decoder,
                num_keyframes=fcfg.num_keyframes,
                accelerator=acc,
                progress=progress,
            )
            say(f"iteration {it}: validation accuracy {record['validation']['accuracy']:.4f}")
        if acc.is_main_process:
            _atomic_write_text(it_dir / SUMMARY_NAME, json.dumps(record, indent=2, default=str))
        summaries.append(record)
    final = {"iterations": summaries, "complete": True, "checkpoint": summaries[-1]["finetune"]["checkpoint"]}
    if acc.is_main_process:
        _atomic_write_text(out / SUMMARY_NAME, json.dumps(final, indent=2, default=str))
    acc.wait_for_everyone()
    return final


__all__ = [
    "CHECKPOINT_NAME",
    "INIT_MODES",
    "LABELS_NAME",
    "LABELS_SUMMARY_NAME",
    "METRICS_NAME",
    "STAGES",
    "STAGE_DEFAULTS",
    "TRAINED_BRANCH",
    "LabelSet",
    "LocalAccelerator",
    "StageLoss",
    "TrainConfig",
    "TrainResult",
    "atomic_torch_save",
    "branch_state_dict",
    "decay_split",
    "epoch_order",
    "evaluate_qa",
    "frame_seed",
    "labels_for_epoch",
    "linear_warmup_cosine_lr",
    "load_item",
    "make_accelerator",
    "no_decay",
    "param_groups",
    "pseudo_label",
    "pseudo_label_predictions",
    "qvh_frame_labels",
    "random_resized_crop",
    "rank_batches",
    "read_labels",
    "read_training_checkpoint",
    "select_keyframes",
    "self_refine",
    "summarize_labels",
    "train_stage",
    "usable_samples",
]
