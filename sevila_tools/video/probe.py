"""Video facts: ``probe`` (through the chosen decoder) and ``probe_video`` (cheap pre-flight check)."""

from __future__ import annotations

import math
import os
from typing import Any

from sevila_tools.errors import VideoError
from sevila_tools.video.auto import open_any_reader
from sevila_tools.video.base import Decoder, VideoInfo, _DecodeFailure, check_video_path, logger
from sevila_tools.video.decode import _PyAVReader

__all__ = ["VideoInfo", "check_video_path", "probe", "probe_video"]


def probe(path: str | os.PathLike[str], decoder: Decoder = "auto") -> VideoInfo:
    """Frame count, fps, duration and native size of a video, as ``decoder`` reads it.

    With PyAV and a container that stores no frame count (mkv, webm) the whole stream is decoded to
    count frames; :func:`probe_video` is the cheap alternative. Raises :class:`VideoError` for a
    missing/empty/unreadable file, a file without a video stream or without frames.
    """
    p = check_video_path(path)
    reader = open_any_reader(p, decoder, None)
    try:
        width, height = reader.native_size()
    except _DecodeFailure as exc:
        if reader.name != "decord":
            raise
        logger.warning("decord failed while decoding %s (%s); falling back to PyAV", p, exc.reason)
        try:
            reader = _PyAVReader(p, None)
            width, height = reader.native_size()
        except _DecodeFailure as exc2:
            raise _DecodeFailure(p, f"pyav: {exc2.reason}; decord: {exc.reason}") from exc2
    num = reader.num_frames
    return VideoInfo(
        path=str(p), num_frames=num, fps=reader.fps, duration=num / reader.fps, width=width, height=height
    )


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Cheap pre-flight check with PyAV: open the container, find a video stream, count its frames.

    The count is the container's stored frame count, else the number of video packets (demuxed, not
    decoded); only the first frame is decoded (for the size after display rotation). Raises a one-line
    :class:`VideoError` for a missing, empty or unreadable file (e.g. text renamed ``.mp4``), a file
    without a video stream, without frames or without a valid frame rate.
    """
    import av  # noqa: PLC0415

    p = check_video_path(path)
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise _DecodeFailure(p, "no video stream", "pyav")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            count = int(stream.frames or 0)
            size = _first_frame_size(container, stream)
        if count < 1:  # no stored count: one more pass that reads packets without decoding them
            with av.open(str(p)) as container:
                count = _count_packets(container, container.streams.video[0])
    except VideoError:
        raise
    except Exception as exc:  # av.error.FFmpegError and friends
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise _DecodeFailure(p, reason, "pyav") from exc
    if size is None or count < 1:
        raise _DecodeFailure(p, "no frames", "pyav")
    if not (fps > 0 and math.isfinite(fps)):
        raise _DecodeFailure(p, "no valid frame rate", "pyav")
    return VideoInfo(
        path=str(p), num_frames=count, fps=fps, duration=count / fps, width=size[0], height=size[1]
    )


def _count_packets(container: Any, stream: Any) -> int:
    return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _first_frame_size(container: Any, stream: Any) -> tuple[int, int] | None:
    """(width, height) of the first frame after display rotation; None when no frame decodes."""
    for frame in container.decode(stream):
        rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 180
        return (frame.height, frame.width) if rotation == 90 else (frame.width, frame.height)
    return None
