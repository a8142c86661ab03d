"""Training data: usable questions, one question's frames for one epoch, the epoch dataset, data counters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from sevila_tools.errors import InputError, VideoError
from sevila_tools.prompts import MAX_OPTIONS
from sevila_tools.training.labelfile import LabelSet, labels_for_epoch
from sevila_tools.training.sampling import crop_rng, frame_seed, random_resized_crop
from sevila_tools.video import SampledFrames

#: a video is "short" when it lasts less than this fraction of what its annotation says
SHORT_FRACTION = 0.9


def usable_samples(
    samples: Sequence[Any], needs_answer: bool = True, limit: int | None = None
) -> tuple[list[Any], int]:
    """Samples a task can train on (QA tasks need a gold answer and 2-5 options), then the first ``limit``.

    Returns ``(samples, number dropped for lack of an answer/options)``."""
    kept, dropped = [], 0
    for s in samples:
        if needs_answer and (s.answer is None or not 2 <= len(s.options) <= MAX_OPTIONS):
            dropped += 1
            continue
        kept.append(s)
    if limit is not None:
        kept = kept[: max(0, int(limit))]
    return kept, dropped


@dataclass
class DrawSpec:
    """How a question's frames are drawn in training: count, seed, decoder, crop, what to do with problems."""

    num_frames: int
    seed: int
    decoder: str = "auto"
    augment: bool = True
    skip_bad_videos: bool = False
    skip_short_videos: bool = False


@dataclass
class Item:
    """One question's training frames for one epoch (``frames.frames`` already cropped when augmenting)."""

    position: int
    qid: str
    frames: SampledFrames
    labels: list[str] | None = None
    short: bool = False


@dataclass
class Skipped:
    """A question left out of a batch: ``reason`` is ``undecodable`` or ``short``."""

    position: int
    qid: str
    reason: str
    message: str


def annotated_length(sample: Any) -> float | None:
    """How long the annotation says the video is (its duration, else the end of its window)."""
    return sample.duration if sample.duration else sample.end


def is_short(sample: Any, frames: SampledFrames) -> bool:
    """The decoded video lasts clearly less than its annotation says (so late spans are never seen)."""
    length = annotated_length(sample)
    if not length or not frames.fps:
        return False
    return frames.num_video_frames / frames.fps < SHORT_FRACTION * float(length)


def _decode(sample: Any, epoch: int, spec: DrawSpec, label_set: LabelSet | None) -> SampledFrames:
    from sevila_tools.video import probe, read_frames, sample_frames

    if label_set is None:
        return sample_frames(
            sample.video,
            spec.num_frames,
            start=sample.start,
            end=sample.end,
            decoder=spec.decoder,  # type: ignore[arg-type]
            mode="random",
            seed=frame_seed(spec.seed, epoch, sample.qid),
            empty_window="start_frame",
        )
    idx = list(label_set.frame_indices)
    pixels, used = read_frames(sample.video, idx, decoder=spec.decoder, size=224)  # type: ignore[arg-type]
    info = None if label_set.fps else probe(sample.video, decoder=spec.decoder)  # type: ignore[arg-type]
    fps = label_set.fps or info.fps  # type: ignore[union-attr]
    count = info.num_frames if info else max(idx) + 1
    return SampledFrames(pixels, idx, [i / fps for i in idx], [], fps, count, False, used)


def load_item(
    sample: Any,
    position: int,
    epoch: int,
    spec: DrawSpec,
    labels: Mapping[str, Sequence[LabelSet]] | None = None,
) -> Item | Skipped:
    """Decode the frames of one question for one epoch: ``num_frames`` random frames (one per segment,
    seeded by ``(seed, epoch, qid)``) or the frames of its label set; one crop for the clip when augmenting.

    A video that cannot be decoded raises :class:`VideoError` naming the question, or is returned as
    :class:`Skipped` with ``skip_bad_videos``; a video clearly shorter than its annotation is flagged
    (``Item.short``) or skipped with ``skip_short_videos``."""
    label_set = labels_for_epoch(labels[sample.qid], epoch) if labels is not None else None
    try:
        frames = _decode(sample, epoch, spec, label_set)
    except (VideoError, InputError) as exc:
        if not spec.skip_bad_videos:
            raise VideoError(f"question {sample.qid}: {exc}") from exc
        return Skipped(position, str(sample.qid), "undecodable", str(exc))
    short = label_set is None and is_short(sample, frames)
    if short and spec.skip_short_videos:
        seconds = frames.num_video_frames / frames.fps
        msg = f"{sample.video} lasts {seconds:.1f} s, annotated {annotated_length(sample):g} s"
        return Skipped(position, str(sample.qid), "short", msg)
    if spec.augment:
        frames = replace(
            frames, frames=random_resized_crop(frames.frames, crop_rng(spec.seed, epoch, sample.qid))
        )
    return Item(
        position, str(sample.qid), frames, None if label_set is None else list(label_set.labels), short
    )


class EpochData(torch.utils.data.Dataset):
    """Map-style dataset of one epoch (decoded in DataLoader workers when ``workers > 0``)."""

    def __init__(
        self,
        samples: Sequence[Any],
        epoch: int,
        spec: DrawSpec,
        labels: Mapping[str, Sequence[LabelSet]] | None = None,
    ) -> None:
        self.samples, self.epoch, self.spec, self.labels = samples, epoch, spec, labels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Item | Skipped:
        return load_item(self.samples[i], i, self.epoch, self.spec, self.labels)


def collate(items: list[Item | Skipped]) -> list[Item | Skipped]:
    """Keep a batch as a list (items differ in video length and labels)."""
    return items


@dataclass
class DataReport:
    """What happened to the questions of a run: dropped before it, skipped or flagged while it ran."""

    questions: int = 0
    no_answer: int = 0
    missing_videos: list[str] = field(default_factory=list)
    unreadable_videos: list[str] = field(default_factory=list)
    undecodable: set[str] = field(default_factory=set)
    short: set[str] = field(default_factory=set)
    short_examples: list[str] = field(default_factory=list)
    short_policy: str = "keep"

    def note(self, entry: Item | Skipped) -> None:
        """Count a decoded or skipped question."""
        if isinstance(entry, Skipped):
            (self.undecodable if entry.reason == "undecodable" else self.short).add(entry.qid)
            if entry.reason == "short" and len(self.short_examples) < 3:
                self.short_examples.append(entry.message)
        elif entry.short:
            self.short.add(entry.qid)
            if len(self.short_examples) < 3:
                seconds = entry.frames.num_video_frames / entry.frames.fps
                self.short_examples.append(
                    f"{entry.qid}: video lasts {seconds:.1f} s, shorter than annotated"
                )

    def merge(self, other: DataReport) -> None:
        """Add another process's run-time counters."""
        self.undecodable |= other.undecodable
        self.short |= other.short
        self.short_examples = (self.short_examples + other.short_examples)[:3]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON counters for ``summary.json``."""
        action = "skipped" if self.short_policy == "skip" else "kept (frames come from the part that exists)"
        return {
            "questions": self.questions,
            "dropped_without_answer": self.no_answer,
            "missing_videos": len(self.missing_videos),
            "unreadable_videos": len(self.unreadable_videos),
            "skipped_undecodable_questions": len(self.undecodable),
            "short_video_questions": len(self.short),
            "short_videos_action": action if self.short else None,
            "short_video_examples": self.short_examples,
        }
