"""Decoding knobs of the benchmarks (decoder, decode workers, prefetch) on the video module's own APIs."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sevila_tools import video
from sevila_tools.encoding import EncodedVideo, FrameSpec, VideoEncoder
from sevila_tools.errors import InputError, VideoError
from sevila_tools.timing import Timer


@dataclass(frozen=True)
class DecodeKnobs:
    """``decoder``: auto|decord|pyav; ``workers``: decode threads; ``prefetch``: videos decoded ahead."""

    decoder: str = "auto"
    workers: int = 1
    prefetch: int = 2


def _accepts(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def video_api() -> dict[str, bool]:
    """Which parallel-decoding APIs this checkout has (recorded in every report)."""
    return {
        "sample_frames_workers": _accepts(video.sample_frames, "workers"),
        "decode_pool": hasattr(video, "DecodePool"),
        "encoder_workers": _accepts(VideoEncoder.__init__, "workers"),
    }


def make_encoder(runtime: Any, knobs: DecodeKnobs, timer: Timer | None = None) -> VideoEncoder:
    """The library's encoder, no feature store, with the decode workers when it takes them."""
    kw: dict[str, Any] = {"workers": knobs.workers} if video_api()["encoder_workers"] else {}
    return VideoEncoder(runtime, decoder=knobs.decoder, store=None, timer=timer, **kw)


def decode(path: str, num_frames: int, knobs: DecodeKnobs) -> video.SampledFrames:
    """SeViLA's sampling of ``num_frames`` frames, decoded with ``knobs.workers`` threads where supported."""
    kw: dict[str, Any] = {}
    if knobs.workers > 1 and video_api()["sample_frames_workers"]:
        kw["workers"] = knobs.workers
    return video.sample_frames(path, num_frames, decoder=knobs.decoder, **kw)


def decode_all(paths: list[str], num_frames: int, knobs: DecodeKnobs) -> list[video.SampledFrames]:
    """Decode several videos as :func:`encode_stream` does, without the model: one after another in one
    thread, or up to ``workers`` videos at once (one reader each)."""
    if knobs.workers <= 1 or len(paths) == 1:
        return [decode(p, num_frames, knobs) for p in paths]
    single = DecodeKnobs(knobs.decoder, 1, knobs.prefetch)
    with ThreadPoolExecutor(max_workers=knobs.workers, thread_name_prefix="bench-decode") as pool:
        return list(pool.map(lambda p: decode(p, num_frames, single), paths))


def one_reader(path: str, num_frames: int) -> video.SampledFrames:
    """The decode baseline of the targets: one decord reader (PyAV when decord is not installed)."""
    return video.sample_frames(path, num_frames, decoder="decord" if video.decord_available() else "pyav")


def encode_one(encoder: VideoEncoder, path: str, num_frames: int, knobs: DecodeKnobs) -> EncodedVideo:
    """One new video: the encoder's own decode when it needs no extra knob, else :func:`decode` + its ViT."""
    api = video_api()
    if knobs.workers <= 1 or api["encoder_workers"] or not api["sample_frames_workers"]:
        return encoder.encode(FrameSpec(path, num_frames))
    with encoder.timer.stage("decode"):
        frames = decode(path, num_frames, knobs)
    return encoder.from_frames(path, frames)


def encode_stream(
    encoder: VideoEncoder, specs: list[FrameSpec], knobs: DecodeKnobs
) -> Iterator[tuple[FrameSpec, EncodedVideo | Exception]]:
    """The eval path: videos decoded ahead while the ViT and the model run in this thread.

    One decode thread is the library's ``encode_many``; with more workers, up to ``workers`` videos decode
    at once (bounded by ``prefetch`` videos ahead), one reader each."""
    if knobs.workers <= 1 or knobs.prefetch <= 0:
        yield from encoder.encode_many(specs, prefetch=knobs.prefetch)
        return

    def work(spec: FrameSpec) -> video.SampledFrames:
        with encoder.timer.stage("decode"):
            return decode(spec.video, spec.num_frames, DecodeKnobs(knobs.decoder, 1, knobs.prefetch))

    pool = ThreadPoolExecutor(max_workers=knobs.workers, thread_name_prefix="bench-decode")
    futures: dict[int, Future] = {}
    try:
        for i, spec in enumerate(specs):
            for j in range(i, min(len(specs), i + 1 + knobs.prefetch)):
                if j not in futures:
                    futures[j] = pool.submit(work, specs[j])
            try:
                yield spec, encoder.from_frames(spec.video, futures.pop(i).result())
            except (VideoError, InputError) as exc:
                yield spec, exc
    finally:
        for fut in futures.values():
            fut.cancel()
        pool.shutdown(wait=True)


__all__ = [
    "DecodeKnobs",
    "decode",
    "decode_all",
    "encode_one",
    "encode_stream",
    "make_encoder",
    "one_reader",
    "video_api",
]
