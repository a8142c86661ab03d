"""Shared pieces of the video layer: decoder names, path checks, ``VideoInfo`` and the decode error."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from sevila_tools.errors import InputError, VideoError

__all__ = ["DECODERS", "Decoder", "VideoInfo", "check_video_path", "logger"]

#: One logger for the whole video layer (fallback warnings, decord's captured log lines).
logger = logging.getLogger("sevila_tools.video")

Decoder = Literal["auto", "decord", "pyav"]
DECODERS: tuple[str, ...] = ("auto", "decord", "pyav")


@dataclass
class VideoInfo:
    """Basic facts about a video, as the chosen decoder reports them."""

    path: str
    num_frames: int
    fps: float
    duration: float  # num_frames / fps, seconds
    width: int  # native width of decoded frames (after display rotation, as decord does)
    height: int


def check_video_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a :class:`Path` if it is a non-empty regular file.

    Raises :class:`VideoError` for a missing path, a directory, a non-regular file or an empty file.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoError(f"video not found: {p}")
    if p.is_dir():
        raise VideoError(f"video path is a directory: {p}")
    if not p.is_file():
        raise VideoError(f"video path is not a regular file: {p}")
    if p.stat().st_size == 0:
        raise VideoError(f"cannot decode video: {p} (empty file, 0 bytes)")
    return p


def check_decoder(decoder: str) -> Decoder:
    """``decoder`` as a :data:`Decoder`; :class:`InputError` unless it is one of :data:`DECODERS`."""
    if decoder not in DECODERS:
        raise InputError(f"unknown video decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    return cast(Decoder, decoder)


def check_size(size: int | None) -> None:
    """Raise :class:`InputError` unless ``size`` is a positive integer or None."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InputError(f"frame size must be a positive integer or None, got {size!r}")


def one_line(text: str, limit: int = 300) -> str:
    """Collapse ``text`` to one line of at most ``limit`` characters (for error messages)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _DecodeFailure(VideoError):
    """A decoder could not read a file; ``reason`` is the short cause, ``decoder`` who failed.

    ``_DecodeFailure(path, reason, decoder)`` builds the standard message; ``_DecodeFailure(message)``
    (one argument, as ``type(exc)(message)`` does when re-raising with context) keeps the message as is.
    """

    def __init__(self, path: Path | str, reason: str | None = None, decoder: str = "") -> None:
        self.decoder = decoder
        if reason is None:
            self.path: Path | None = None
            self.reason = one_line(str(path), 240)
            super().__init__(str(path))
            return
        self.path = Path(path)
        self.reason = one_line(reason, 240)
        where = f"{decoder}: " if decoder else ""
        super().__init__(f"cannot decode video: {path} ({where}{self.reason})")

    def __reduce__(self):  # pickles across worker processes with all its fields
        if self.path is None:
            return (type(self), (str(self), None, self.decoder))
        return (type(self), (self.path, self.reason, self.decoder))
