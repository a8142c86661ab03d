"""``VideoEncoder``: decode a frame request, run the ViT once, keep the result in a store."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from sevila_tools.encoding.keys import encoding_key, vit_fingerprint
from sevila_tools.encoding.types import EncodedVideo, FeatureStore, FrameSpec
from sevila_tools.errors import InputError, VideoError
from sevila_tools.timing import NullTimer, Timer
from sevila_tools.video import SampledFrames, check_video_path, frames_at_times, read_frames, sample_frames
from sevila_tools.video.base import check_decoder

#: errors of one video that a batch run records instead of stopping
ItemError = (VideoError, InputError)


class VideoEncoder:
    """Turns :class:`FrameSpec` requests into :class:`EncodedVideo` values, through one store.

    Args:
        runtime: the loaded :class:`~sevila_tools.runtime.SevilaRuntime` (its ViT encodes the frames).
        decoder: ``auto`` | ``decord`` | ``pyav``.
        store: a :class:`FeatureStore` (``MemoryStore``, ``DiskStore``) or ``None`` (no caching).
        timer: receives the ``decode`` and ``vit`` stages.
        cache_random: also store random-mode requests (training draws new frames every epoch: off by default).
        decode_workers: ``encode_many`` decodes in this many worker processes (0: one background thread).
    """

    def __init__(
        self,
        runtime: Any,
        *,
        decoder: str = "auto",
        store: FeatureStore | None = None,
        timer: Timer | None = None,
        cache_random: bool = False,
        decode_workers: int = 0,
    ) -> None:
        self.runtime = runtime
        self.decoder = check_decoder(decoder)
        self.store = store
        self.timer = timer or NullTimer()
        self.cache_random = cache_random
        self.decode_workers = int(decode_workers)
        self._vit_id: str | None = None
        self.decoded = 0  # videos decoded (store misses)

    @property
    def vit_id(self) -> str:
        """Fingerprint of the ViT weights/precision (part of every key)."""
        if self._vit_id is None:
            self._vit_id = vit_fingerprint(self.runtime)
        return self._vit_id

    def key(self, spec: FrameSpec) -> str:
        """The store key of ``spec`` (content identity, sampling, decoder, ViT)."""
        return encoding_key(spec, self.decoder, self.vit_id)

    def _cached(self, spec: FrameSpec) -> bool:
        return self.store is not None and (spec.mode == "uniform" or self.cache_random)

    # ------------------------------------------------------------------ the two halves of one encoding
    def lookup_or_decode(self, spec: FrameSpec) -> EncodedVideo | tuple[str | None, SampledFrames]:
        """Store hit -> the encoded video; miss -> ``(key, decoded frames)`` still to go through the ViT.

        Thread-safe (the batch form runs it ahead in a background thread)."""
        check_video_path(spec.video)
        key = None
        if self._cached(spec):
            key = self.key(spec)
            hit = self.store.get(key)  # type: ignore[union-attr]
            if hit is not None:
                return dataclasses.replace(hit, video=spec.video, start=spec.start, end=spec.end)
        with self.timer.stage("decode"):
            frames = sample_frames(
                spec.video, spec.num_frames, start=spec.start, end=spec.end, decoder=self.decoder,
                mode=spec.mode, seed=spec.seed, empty_window=spec.empty_window,
            )
        return key, frames

    def finish(self, spec: FrameSpec, got: EncodedVideo | tuple[str | None, SampledFrames]) -> EncodedVideo:
        """Run the ViT on decoded frames (caller's thread) and store the result."""
        if isinstance(got, EncodedVideo):
            return got
        key, frames = got
        self.decoded += 1
        ev = self.from_frames(spec.video, frames, spec.start, spec.end)
        if key is not None:
            self.store.put(key, ev)  # type: ignore[union-attr]
        return ev

    # ------------------------------------------------------------------ public forms
    def encode(self, spec: FrameSpec) -> EncodedVideo:
        """Encode one request (store first)."""
        return self.finish(spec, self.lookup_or_decode(spec))

    def encode_many(
        self, specs: Iterable[FrameSpec], prefetch: int = 2
    ) -> Iterator[tuple[FrameSpec, EncodedVideo | Exception]]:
        """Encode requests in order. Decoding runs up to ``prefetch`` videos ahead (in a background thread, or
        in ``decode_workers`` processes) while the ViT works in the caller's thread; a video that fails
        yields its error and the others go on."""
        specs = list(specs)
        if self.decode_workers > 0:
            yield from self._encode_with_pool(specs, prefetch)
        elif prefetch <= 0:
            for spec in specs:
                yield spec, self._safe(lambda s=spec: self.encode(s))
        else:
            yield from self._encode_with_thread(specs, prefetch)

    def _encode_with_thread(
        self, specs: list[FrameSpec], prefetch: int
    ) -> Iterator[tuple[FrameSpec, EncodedVideo | Exception]]:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sevila-decode")
        futures: dict[int, Future] = {}
        try:
            for i, spec in enumerate(specs):
                for j in range(i, min(len(specs), i + 1 + prefetch)):
                    if j not in futures:
                        futures[j] = pool.submit(self.lookup_or_decode, specs[j])
                fut = futures.pop(i)
                yield spec, self._safe(lambda f=fut, s=spec: self.finish(s, f.result()))
        finally:
            for fut in futures.values():
                fut.cancel()
            pool.shutdown(wait=True)

    def _stored(self, spec: FrameSpec) -> bool:
        if not self._cached(spec):
            return False
        try:
            return bool(self.store.contains(self.key(spec)))  # type: ignore[union-attr]
        except (AttributeError, OSError):
            return False

    def _encode_with_pool(
        self, specs: list[FrameSpec], prefetch: int
    ) -> Iterator[tuple[FrameSpec, EncodedVideo | Exception]]:
        from sevila_tools.video import DecodePool, DecodeSpec

        stored = [self._stored(s) for s in specs]
        misses = [
            DecodeSpec(s.video, s.num_frames, s.start, s.end, s.mode, s.seed, s.empty_window)
            for s, hit in zip(specs, stored, strict=True) if not hit
        ]
        with DecodePool(self.decode_workers, self.decoder, max_pending=max(prefetch, self.decode_workers)) as pool:
            decoded = pool.imap(misses)
            for spec, hit in zip(specs, stored, strict=True):
                if hit:
                    yield spec, self._safe(lambda s=spec: self.encode(s))
                    continue
                with self.timer.stage("decode_wait"):
                    got = next(decoded)
                if isinstance(got, Exception):
                    yield spec, got
                    continue
                key = self.key(spec) if self._cached(spec) else None
                yield spec, self._safe(lambda s=spec, k=key, g=got: self.finish(s, (k, g)))

    @staticmethod
    def _safe(fn: Any) -> EncodedVideo | Exception:
        try:
            return fn()
        except ItemError as exc:
            return exc

    def from_frames(
        self, video: str, frames: SampledFrames, start: float | None = None, end: float | None = None
    ) -> EncodedVideo:
        """Encode frames that are already decoded (training items, frames at given times)."""
        with self.timer.stage("vit"):
            raw = self.runtime.vit(frames.frames)
        return EncodedVideo(video=video, frames=frames, raw=raw, start=start, end=end)

    def at_times(self, video: str, times: Sequence[float]) -> EncodedVideo:
        """Encode the frames shown at ``times`` (s), in temporal order."""
        with self.timer.stage("decode"):
            fr = frames_at_times(video, times, decoder=self.decoder)
        order = sorted(range(len(fr.indices)), key=lambda i: fr.indices[i])
        fr = dataclasses.replace(
            fr,
            frames=fr.frames[order],
            indices=[fr.indices[i] for i in order],
            timestamps=[fr.timestamps[i] for i in order],
        )
        return self.from_frames(video, fr)

    def features_at(self, ev: EncodedVideo, frame_indices: Sequence[int]) -> torch.Tensor:
        """Raw features of native frames: taken from the candidates when there, else decoded + ViT."""
        pos = {idx: p for p, idx in enumerate(ev.frames.indices)}
        missing = sorted({int(i) for i in frame_indices if i not in pos})
        extra: dict[int, torch.Tensor] = {}
        if missing:
            with self.timer.stage("decode"):
                pixels, _ = read_frames(ev.video, missing, decoder=self.decoder, size=224)
            with self.timer.stage("vit"):
                feats = self.runtime.vit(pixels)
            extra = dict(zip(missing, feats, strict=True))
        return torch.stack([ev.raw[pos[i]] if i in pos else extra[int(i)] for i in frame_indices])

    def stats(self) -> dict[str, Any]:
        """Decoded videos and the store's counters."""
        out: dict[str, Any] = {"decoded_videos": self.decoded, "enabled": self.store is not None}
        if self.store is not None and hasattr(self.store, "stats"):
            out.update(self.store.stats())
        return out


def encode_video(
    video: str,
    num_frames: int,
    start: float | None = None,
    end: float | None = None,
    *,
    runtime: Any,
    decoder: str = "auto",
    store: FeatureStore | None = None,
) -> EncodedVideo:
    """Sample ``num_frames`` candidates of ``video`` with SeViLA's rule, decode them and run the ViT once.

    >>> ev = encode_video("clip.mp4", 32, runtime=rt)  # doctest: +SKIP
    >>> ev.times, ev.raw.shape  # doctest: +SKIP
    """
    encoder = VideoEncoder(runtime, decoder=decoder, store=store)
    return encoder.encode(FrameSpec(video, num_frames, start, end))
