"""Pure training rules: seeds, the epoch's step plan (global batch by accumulation), span labels, the crop."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def qid_key(qid: str) -> int:
    """A stable integer of a question id (part of every per-question seed)."""
    return zlib.crc32(str(qid).encode("utf-8"))


def frame_seed(seed: int, epoch: int, qid: str) -> int:
    """Seed of the random frame draw of question ``qid`` in ``epoch`` (shared with pseudo-label files)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), qid_key(qid)]).generate_state(1)[0])


def crop_rng(seed: int, epoch: int, qid: str) -> np.random.Generator:
    """Generator of the one crop of question ``qid`` in ``epoch`` (the same for every pass over that clip)."""
    return np.random.default_rng([int(seed), int(epoch), qid_key(qid), 1])


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """Data order of one epoch: a permutation of ``range(n)`` seeded by ``(seed, epoch)``."""
    return np.random.default_rng([int(seed), int(epoch), 0xDA7A]).permutation(n).tolist()


@dataclass(frozen=True)
class BatchLayout:
    """How one optimizer step is split: ``accum`` iterations of ``batch_size`` questions on each of ``world``
    processes; ``loss_scale`` makes the summed gradient equal to that of the reference process count."""

    batch_size: int
    world: int
    accum: int
    loss_scale: float

    @property
    def global_batch(self) -> int:
        """Questions per optimizer step over all processes."""
        return self.batch_size * self.world * self.accum


def batch_layout(
    batch_size: int,
    world: int,
    global_batch: int | None = None,
    accum_steps: int | None = None,
    reference_processes: int = 1,
) -> BatchLayout:
    """Accumulation that reaches ``global_batch`` with ``world`` processes of ``batch_size`` questions.

    ``accum_steps`` (when given) wins over ``global_batch``. The official trainer sums the gradients of its
    accumulated iterations and DDP averages over processes, so its step gradient is ``A_ref`` times the mean
    micro-batch gradient (``A_ref`` = the accumulation of ``reference_processes`` processes, at least 1); each
    loss is scaled by ``A_ref / accum`` so that any process count gives the same update."""
    from sevila_tools.errors import InputError

    if accum_steps is not None:
        accum = int(accum_steps)
    elif global_batch is None:
        accum = 1
    else:
        per_iteration = batch_size * world
        if global_batch % per_iteration:
            raise InputError(
                f"global batch {global_batch} is not a multiple of batch_size x processes "
                f"({batch_size} x {world}); change batch_size or global_batch"
            )
        accum = global_batch // per_iteration
    if accum < 1:
        raise InputError("accumulation must be >= 1 iteration per optimizer step")
    total = batch_size * world * accum
    reference = max(1.0, total / (batch_size * reference_processes))
    return BatchLayout(batch_size, world, accum, reference / accum)


def step_plan(
    n: int, layout: BatchLayout, seed: int, epoch: int, rank: int = 0, drop_last: bool = True
) -> list[list[list[int]]]:
    """This process's micro-batches for each optimizer step of one epoch: ``steps[s][a]`` = positions.

    Step ``s`` takes the next ``global_batch`` questions of the epoch order; iteration ``a`` of process ``r``
    takes the slice ``(a * world + r) * batch_size`` of it, so every process count sees the same questions in
    each optimizer step. ``drop_last`` drops an incomplete final step unless it is the only one; a partial
    step is padded by wrapping around the order (like ``DistributedSampler``) so that all processes run the
    same number of iterations."""
    order = epoch_order(n, seed, epoch)
    g, b, w = layout.global_batch, layout.batch_size, layout.world
    full, rest = divmod(n, g)
    steps: list[list[list[int]]] = []
    for s in range(full):
        chunk = order[s * g : (s + 1) * g]
        steps.append([chunk[(a * w + rank) * b : (a * w + rank + 1) * b] for a in range(layout.accum)])
    if rest and (not drop_last or full == 0):
        chunk = order[full * g :]
        iters = math.ceil(len(chunk) / (b * w))
        if w > 1:
            chunk = (chunk * math.ceil(iters * b * w / len(chunk)))[: iters * b * w]
        micro = [chunk[(a * w + rank) * b : (a * w + rank + 1) * b] for a in range(iters)]
        steps.append([m for m in micro if m])
    return steps


def linear_warmup_cosine_lr(
    epoch: int, step: int, init_lr: float, min_lr: float, warmup_lr: float, warmup_steps: int, max_epoch: int
) -> float:
    """LAVIS ``LinearWarmupCosineLRScheduler`` with ``step`` = optimizer steps done in the epoch.

    Epoch 0: ``min(init_lr, warmup_lr + (init_lr - warmup_lr) * step / max(warmup_steps, 1))``; epoch
    ``e >= 1``: ``(init_lr - min_lr) * 0.5 * (1 + cos(pi * e / max_epoch)) + min_lr``, constant in the epoch."""
    if epoch == 0:
        return min(init_lr, warmup_lr + (init_lr - warmup_lr) * step / max(warmup_steps, 1))
    return (init_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / max_epoch)) + min_lr


def steps_per_epoch(n: int, layout: BatchLayout, drop_last: bool = True) -> int:
    """Optimizer steps of one epoch over ``n`` questions (:func:`step_plan`'s count, without the order)."""
    full, rest = divmod(n, layout.global_batch)
    return full + int(bool(rest) and (not drop_last or full == 0))


def learning_warning(
    n: int, layout: BatchLayout, epochs: int, lr: float, min_lr: float, warmup_lr: float, warmup_steps: int,
    drop_last: bool = True,
) -> str | None:
    """One warning line when the planned optimizer steps never bring the learning rate near ``lr`` (for
    example ``--limit 16 --epochs 1``: one step at the warm-up's 1e-8); ``None`` when the run can learn."""
    per_epoch = steps_per_epoch(n, layout, drop_last)
    lrs = [linear_warmup_cosine_lr(e, s, lr, min_lr, warmup_lr, warmup_steps, epochs)
           for e in range(epochs) for s in ([0, per_epoch - 1] if e == 0 else [0])]
    peak = max(lrs)
    if peak >= 0.1 * lr:
        return None
    total = per_epoch * epochs
    return (
        f"warning: this run cannot learn: {total} optimizer step{'s' * (total != 1)} ({n} questions, global "
        f"batch {layout.global_batch}, {epochs} epoch{'s' * (epochs != 1)}) reach lr {peak:.1e} at most "
        f"(peak {lr:.1e} after a {warmup_steps}-step warm-up from warmup_lr); use more epochs, a smaller "
        "global_batch or fewer warmup_steps"
    )


def qvh_frame_labels(
    frame_indices: Sequence[int], fps: float, windows: Sequence[Sequence[float]] | None
) -> list[str]:
    """Span annotation -> frame labels: ``yes`` iff ``t = idx / fps`` lies in any relevant window (both ends
    included, the frame scorer's rule); no windows (a test split) -> all ``no``."""
    from sevila_tools.eval.scorers import frame_labels

    return ["yes" if v else "no" for v in frame_labels([i / fps for i in frame_indices], windows)]


def random_resized_crop(
    frames: np.ndarray,
    rng: np.random.Generator,
    size: int = 224,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """``RandomResizedCrop(size, scale, bicubic)`` with one crop for all frames of a clip (torchvision's
    parameter rule, ten tries then the full frame); uint8 in and out."""
    _, h, w, _ = frames.shape
    area = h * w
    top, left, ch, cw = 0, 0, h, w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw_, ch_ = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw_ <= w and 0 < ch_ <= h:
            top, left, ch, cw = int(rng.integers(0, h - ch_ + 1)), int(rng.integers(0, w - cw_ + 1)), ch_, cw_
            break
    crop = np.ascontiguousarray(frames[:, top : top + ch, left : left + cw])
    x = torch.from_numpy(crop).permute(0, 3, 1, 2).float()
    x = nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
