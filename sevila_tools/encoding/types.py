"""The encoded-video value, the frame request it answers and the store protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from sevila_tools.video import SampledFrames


@dataclass(frozen=True)
class FrameSpec:
    """Which frames of which video: ``num_frames`` by SeViLA's sampling rule over ``[start, end)``.

    ``mode="random"`` draws one frame per segment with ``seed`` (training). ``empty_window="start_frame"``
    samples an empty or reversed window at its start frame (the official loader does so for an empty window
    only; it walks a reversed one backwards, ``docs/video.md``); ``"raise"`` (default) refuses it."""

    video: str
    num_frames: int
    start: float | None = None
    end: float | None = None
    mode: Literal["uniform", "random"] = "uniform"
    seed: int | None = None
    empty_window: Literal["raise", "start_frame"] = "raise"


@dataclass
class EncodedVideo:
    """Candidate frames of one video (uint8 224x224, native indices, times) with their raw ViT features.

    ``raw`` is ``(T, 257, D)`` on the runtime's device; ``start``/``end`` are the window that was sampled."""

    video: str
    frames: SampledFrames
    raw: torch.Tensor
    start: float | None = None
    end: float | None = None

    @property
    def indices(self) -> list[int]:
        """Native frame indices of the candidates."""
        return list(self.frames.indices)

    @property
    def times(self) -> list[float]:
        """Timestamps (s) of the candidates."""
        return [float(t) for t in self.frames.timestamps]

    @property
    def num_frames(self) -> int:
        return len(self.frames.indices)


class FeatureStore(Protocol):
    """A cache of encoded videos by key (:func:`sevila_tools.encoding.keys.encoding_key`)."""

    def get(self, key: str) -> EncodedVideo | None: ...

    def put(self, key: str, value: EncodedVideo) -> None: ...

    def contains(self, key: str) -> bool: ...
