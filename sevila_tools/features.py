"""Decoded candidate frames plus their raw ViT features, computed once and shared.

``load_frame_set`` is the single place where a video becomes model input: sample frames with SeViLA's rule,
decode them, run the ViT once. Both branches, every selector and every question on the same video reuse the
result. An optional cache (``get``/``put`` by key, see :class:`MemoryCache`; the disk cache lives in
:mod:`sevila_tools.cache`) skips decoding and the ViT on repeat visits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from sevila_tools.runtime import SevilaRuntime
from sevila_tools.video import SampledFrames, check_video_path, read_frames, sample_frames


@dataclass
class FrameSet:
    """Candidate frames of one video with raw ViT features ``(T, 257, D)`` on the runtime's device."""

    video: str
    frames: SampledFrames
    raw: torch.Tensor


class FeatureStore(Protocol):
    """What a feature cache provides."""

    def get(self, key: str) -> FrameSet | None: ...
    def put(self, key: str, value: FrameSet) -> None: ...


class MemoryCache:
    """In-process LRU cache of frame sets (used by long-lived servers and agents)."""

    def __init__(self, max_items: int = 16) -> None:
        self.max_items = max_items
        self._items: dict[str, FrameSet] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> FrameSet | None:
        item = self._items.pop(key, None)
        if item is None:
            self.misses += 1
            return None
        self._items[key] = item
        self.hits += 1
        return item

    def put(self, key: str, value: FrameSet) -> None:
        self._items[key] = value
        while len(self._items) > self.max_items:
            self._items.pop(next(iter(self._items)))


def frame_set_key(runtime: SevilaRuntime, video: str, **sampling: Any) -> str:
    """Cache key for :func:`load_frame_set`: :func:`sevila_tools.cache.feature_key` (video identity + sampling)
    with the loaded model's identity (model, checkpoint, precision) in place of a ViT weight fingerprint."""
    from sevila_tools.cache import feature_key

    model_id = "/".join(
        [
            str(runtime.info.get("model")),
            str(runtime.info.get("checkpoint")),
            str(runtime.precision.describe()),
        ]
    )
    return feature_key(video, model_id, **sampling)


def load_frame_set(
    runtime: SevilaRuntime,
    video: str,
    num_frames: int,
    start: float | None = None,
    end: float | None = None,
    decoder: str = "auto",
    mode: str = "uniform",
    seed: int | None = None,
    cache: FeatureStore | None = None,
) -> FrameSet:
    """Sample ``num_frames`` candidates (SeViLA's rule), decode them and compute raw ViT features once."""
    check_video_path(video)  # one-line VideoError for a missing path / directory before anything else
    key = None
    if cache is not None and mode == "uniform":
        key = frame_set_key(runtime, video, n=num_frames, start=start, end=end, decoder=decoder)
        hit = cache.get(key)
        if hit is not None:
            return hit
    frames = sample_frames(video, num_frames, start=start, end=end, decoder=decoder, mode=mode, seed=seed)
    fs = FrameSet(video=video, frames=frames, raw=runtime.vit(frames.frames))
    if cache is not None and key is not None:
        cache.put(key, fs)
    return fs


def features_at(
    runtime: SevilaRuntime, fs: FrameSet, frame_indices: list[int], decoder: str = "auto"
) -> torch.Tensor:
    """Raw features of arbitrary native frames: reused from the candidates when possible, else decoded + ViT."""
    pos = {idx: p for p, idx in enumerate(fs.frames.indices)}
    missing = sorted({i for i in frame_indices if i not in pos})
    extra: dict[int, torch.Tensor] = {}
    if missing:
        pixels, _ = read_frames(fs.video, missing, decoder=decoder, size=224)
        for i, feat in zip(missing, runtime.vit(pixels), strict=True):
            extra[i] = feat
    return torch.stack([fs.raw[pos[i]] if i in pos else extra[i] for i in frame_indices])
