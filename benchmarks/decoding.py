"""Decoding knobs of the benchmarks (decoder, decode workers, prefetch) on the video module's own APIs."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from sevila_tools import video
from sevila_tools.encoding import EncodedVideo, FrameSpec, VideoEncoder
from sevila_tools.timing import Timer


@dataclass(frozen=True)
class DecodeKnobs:
    """``decoder``: auto|decord|pyav; ``workers``: decode processes (0: the library's default, i.e. one video
    split over the usable cores, and one background thread for a dataset run, as ``sevila eval``; N: one video
    split over N processes, the calling one included, or a ``DecodePool`` of N for a dataset run);
    ``prefetch``: videos decoded ahead of the model."""

    decoder: str = "auto"
    workers: int = 0
    prefetch: int = 2


def _accepts(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def video_api() -> dict[str, bool]:
    """Which parallel-decoding APIs this checkout has (recorded in every scenario report)."""
    return {
        "sample_frames_workers": _accepts(video.sample_frames, "workers"),
        "decode_pool": hasattr(video, "DecodePool"),
        "encoder_decode_workers": _accepts(VideoEncoder.__init__, "decode_workers"),
    }


def make_encoder(runtime: Any, knobs: DecodeKnobs, timer: Timer | None = None) -> VideoEncoder:
    """The library's encoder without a feature store; ``encode_many`` decodes in ``knobs.workers`` processes."""
    kw: dict[str, Any] = {}
    if knobs.workers > 0 and video_api()["encoder_decode_workers"]:
        kw["decode_workers"] = knobs.workers
    return VideoEncoder(runtime, decoder=knobs.decoder, store=None, timer=timer, **kw)


def decode(path: str, num_frames: int, knobs: DecodeKnobs) -> video.SampledFrames:
    """SeViLA's sampling of ``num_frames`` frames of one video, split across ``knobs.workers`` processes
    (0: the library's default)."""
    kw: dict[str, Any] = {}
    if knobs.workers > 0 and video_api()["sample_frames_workers"]:
        kw["workers"] = knobs.workers
    return video.sample_frames(path, num_frames, decoder=knobs.decoder, **kw)


def decode_all(paths: list[str], num_frames: int, knobs: DecodeKnobs) -> list[Any]:
    """Decode several videos as ``encode_many`` does, without the model: one after another in this process,
    or through a ``DecodePool`` of ``knobs.workers`` processes (same bound on pending videos)."""
    if knobs.workers <= 0 or not video_api()["decode_pool"]:
        return [video.sample_frames(p, num_frames, decoder=knobs.decoder) for p in paths]
    pending = max(knobs.prefetch, knobs.workers)
    with video.DecodePool(knobs.workers, knobs.decoder, max_pending=pending) as pool:
        out = list(pool.imap([video.DecodeSpec(p, num_frames) for p in paths]))
    for got in out:
        if isinstance(got, Exception):
            raise got
    return out


def one_reader(path: str, num_frames: int) -> video.SampledFrames:
    """The decode baseline of the targets: one decord reader (PyAV when decord is not installed)."""
    return video.sample_frames(path, num_frames, decoder="decord" if video.decord_available() else "pyav")


def encode_one(encoder: VideoEncoder, path: str, num_frames: int, knobs: DecodeKnobs) -> EncodedVideo:
    """One new video: the encoder's own decode (the default), or (``workers > 0``) :func:`decode` + the ViT."""
    if knobs.workers <= 0:
        return encoder.encode(FrameSpec(path, num_frames))
    with encoder.timer.stage("decode"):
        frames = decode(path, num_frames, knobs)
    return encoder.from_frames(path, frames)


__all__ = [
    "DecodeKnobs",
    "decode",
    "decode_all",
    "encode_one",
    "make_encoder",
    "one_reader",
    "video_api",
]
