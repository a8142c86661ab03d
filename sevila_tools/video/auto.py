"""``decoder="auto"``: per file, the fastest reader that returns the official reader's frames.

The rules and the files they were checked on are in ``docs/video.md`` ("How auto chooses").
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from sevila_tools.video.base import logger
from sevila_tools.video.decode import Reader, _PyAVReader, decord_available, open_reader
from sevila_tools.video.seek import PacketIndex, build_packet_index

__all__ = [
    "AutoChoice",
    "SeekReader",
    "StreamFacts",
    "auto_choice",
    "clear_cache",
    "decord_reads_exactly",
    "frame_source",
    "open_any_reader",
    "packet_index",
    "stream_facts",
]

AutoChoice = Literal["seek", "decord", "pyav"]

#: containers whose packets carry real presentation timestamps (AVI's are made up by the demuxer)
SEEK_CONTAINERS = ("mov", "mp4", "matroska", "webm")
#: codecs whose PyAV frames were checked equal to decord's (FFmpeg 8 vs decord's FFmpeg 4.1)
SEEK_CODECS = ("h264", "hevc", "mpeg4", "mpeg2video", "vp8", "vp9", "mjpeg")
#: 8-bit pixel formats whose conversion to RGB was checked equal (10-bit differs at native size)
SEEK_PIX_FMTS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p")


@dataclass(frozen=True)
class StreamFacts:
    """What the container says about its first video stream, read without decoding a frame."""

    formats: tuple[str, ...]  # demuxer names, e.g. ("mov", "mp4", "m4a", "3gp", "3g2", "mj2")
    codec: str
    pix_fmt: str
    stored_frames: int  # 0 when the container stores no frame count (mkv, webm)
    has_b_frames: bool  # the stream reorders frames (B-frames)
    fps: float  # average frame rate, as the PyAV reader reads it
    time_base: Fraction | None

    @property
    def avi(self) -> bool:
        return "avi" in self.formats


def _key(path: str | Path) -> tuple[str, int, int]:
    st = os.stat(path)
    return str(path), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=256)
def _cached_facts(path: str, mtime_ns: int, size: int) -> StreamFacts | None:
    import av  # noqa: PLC0415

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            ctx = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            return StreamFacts(
                formats=tuple(container.format.name.split(",")),
                codec=str(ctx.name),
                pix_fmt=str(ctx.pix_fmt or ""),
                stored_frames=int(stream.frames or 0),
                has_b_frames=bool(ctx.has_b_frames),
                fps=float(rate) if rate else 0.0,
                time_base=stream.time_base,
            )
    except Exception as exc:  # unreadable: the sequential readers report it properly
        logger.debug("no stream facts for %s: %s", path, exc)
        return None


@functools.lru_cache(maxsize=64)
def _cached_index(path: str, mtime_ns: int, size: int) -> PacketIndex | None:
    return build_packet_index(path)


def stream_facts(path: str | Path) -> StreamFacts | None:
    """:class:`StreamFacts` of ``path`` (None when PyAV cannot open it), cached per path, mtime and size."""
    return _cached_facts(*_key(path))


def packet_index(path: str | Path) -> PacketIndex | None:
    """:func:`~sevila_tools.video.seek.build_packet_index`, cached per path, modification time and size."""
    return _cached_index(*_key(path))


def clear_cache() -> None:
    """Forget cached stream facts and packet indexes (benchmarks time first reads with it)."""
    _cached_facts.cache_clear()
    _cached_index.cache_clear()


def decord_reads_exactly(facts: StreamFacts | None) -> bool:
    """Whether decord returns the asked frames whatever the access pattern (``get_batch`` with gaps).

    Not for H.264/HEVC in AVI (frames from the wrong keyframe), nor for reordering codecs other than H.264
    (mpeg4, mpeg2, HEVC with B-frames return a frame 2-3 positions later after a seek). Unknown facts count
    as exact: the official reader then reports the file as it always did.
    """
    if facts is None:
        return True
    if facts.avi and facts.codec in ("h264", "hevc"):
        return False
    return facts.codec == "h264" or not facts.has_b_frames


def seek_index(path: str | Path, facts: StreamFacts | None) -> PacketIndex | None:
    """The packet index of the auto seek path, or None where PyAV's frames are not known to be decord's."""
    if facts is None or facts.avi or not set(facts.formats) & set(SEEK_CONTAINERS):
        return None
    if facts.codec not in SEEK_CODECS or facts.pix_fmt not in SEEK_PIX_FMTS:
        return None
    if not (facts.fps > 0 and math.isfinite(facts.fps)):
        return None
    index = packet_index(path)
    if index is None or (facts.stored_frames and facts.stored_frames != index.num_frames):
        return None  # decord counts packets: a stored count that disagrees is not trusted
    return index


def auto_choice(path: str | Path) -> AutoChoice:
    """``seek`` (PyAV from the keyframes, exact index), ``decord`` (official) or ``pyav`` (sequential)."""
    facts = stream_facts(path)
    if seek_index(path, facts) is not None:
        return "seek"
    if not decord_available() or not decord_reads_exactly(facts):
        return "pyav"  # decord would return other frames after a seek: read from the start instead
    return "decord"


def frame_source(path: str | os.PathLike[str], decoder: str) -> str:
    """Whose frames ``decoder`` returns for ``path``: ``decord`` or ``pyav`` (feature-cache keys).

    ``auto`` returns decord's frames wherever decord reads the file exactly (so its cache entries are
    shared with ``decoder="decord"``), else PyAV's (shared with ``decoder="pyav"``).
    """
    if decoder != "auto":
        return decoder
    if not decord_available():
        return "pyav"
    return "decord" if decord_reads_exactly(stream_facts(path)) else "pyav"


class SeekReader(_PyAVReader):
    """PyAV reader for the auto seek path: frame count and timestamps from the exact packet index."""

    def __init__(self, path: Path, size: int | None, index: PacketIndex, facts: StreamFacts) -> None:
        # no super().__init__: the stream facts were read already (one container open fewer)
        self.path, self.size, self.index = path, size, index
        self.fps, self.time_base = facts.fps, facts.time_base
        self._stream_frames = facts.stored_frames
        self._num_frames: int | None = index.num_frames  # = decord's count: one packet per frame
        self._native: tuple[int, int] | None = None


def open_any_reader(path: Path, decoder: str, size: int | None) -> Reader:
    """:func:`~sevila_tools.video.decode.open_reader`, with ``auto`` choosing per file (:func:`auto_choice`)."""
    if decoder != "auto":
        return open_reader(path, decoder, size)
    choice = auto_choice(path)
    facts = stream_facts(path)
    if choice == "seek" and facts is not None:
        index = seek_index(path, facts)
        if index is not None:
            return SeekReader(path, size, index, facts)
    if choice == "pyav":
        return _PyAVReader(path, size)
    return open_reader(path, "auto", size)


def fallback_reader(reader: SeekReader) -> Reader:
    """What ``auto`` reads with when the seek path fails: decord where it is exact, else PyAV from the start."""
    if decord_available() and decord_reads_exactly(stream_facts(reader.path)):
        return open_reader(reader.path, "auto", reader.size)
    return _PyAVReader(reader.path, reader.size)
