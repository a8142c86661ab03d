"""Checks on the video a web user gives: an upload (size, extension, decodes) or a path in an allowed folder.

Every refusal is a one-line :class:`~sevila_tools.errors.SevilaError` naming the file by its base name only
(server-side temporary paths never reach the page).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sevila_tools.errors import InputError, VideoError

#: file extensions offered by the upload widget and accepted by :func:`check_upload`
VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".3gp",
    ".ts",
    ".ogv",
)
MIB = 1 << 20


def _probe(path: str) -> None:
    """Open the container and find frames (``probe_video`` when the video module has it, else ``probe``)."""
    from sevila_tools import video

    check = getattr(video, "probe_video", None) or video.probe
    check(path)


def _readable(path: Path, shown: str) -> None:
    """Raise a one-line :class:`VideoError` naming ``shown`` when ``path`` does not decode as a video."""
    try:
        _probe(str(path))
    except VideoError as exc:
        reason = getattr(exc, "reason", None) or str(exc).replace(str(path), shown)
        raise VideoError(f"not a readable video: {shown} ({reason})") from None


def check_upload(path: str | os.PathLike[str], max_bytes: int, display_name: str | None = None) -> str:
    """Validate an uploaded file: a video extension, at most ``max_bytes``, and a container that decodes.

    Returns the path as a string; raises :class:`InputError` (size, extension) or :class:`VideoError`.
    """
    p = Path(path)
    shown = display_name or p.name
    if not p.is_file():
        raise VideoError(f"the upload of {shown} is gone; upload it again")
    size = p.stat().st_size
    if size > max_bytes:
        raise InputError(f"{shown} is {size / MIB:.1f} MB; uploads are limited to {max_bytes / MIB:.0f} MB")
    if p.suffix.lower() not in VIDEO_EXTENSIONS:
        raise InputError(f"{shown} is not a video file (expected one of: {' '.join(VIDEO_EXTENSIONS)})")
    if size == 0:
        raise VideoError(f"not a readable video: {shown} (empty file)")
    _readable(p, shown)
    return str(p)


def resolve_server_path(text: str, allow_dirs: Sequence[Path]) -> str:
    """The real path of a server-side video, refused unless it lies under one of ``allow_dirs``.

    Relative paths are taken from the first allowed folder; symlinks are resolved before the check.
    """
    if not allow_dirs:
        raise InputError("reading videos from server paths is off (start `sevila web` with --allow-dir DIR)")
    p = Path(text.strip()).expanduser()
    if not p.is_absolute():
        p = allow_dirs[0] / p
    real = Path(os.path.realpath(p))
    if not any(real.is_relative_to(d) for d in allow_dirs):
        roots = ", ".join(str(d) for d in allow_dirs)
        raise InputError(f"video path is outside the allowed folders ({roots}): {text.strip()}")
    if not real.is_file():
        raise VideoError(f"video not found: {text.strip()}")
    _readable(real, text.strip())
    return str(real)


def real_dirs(dirs: Sequence[str | os.PathLike[str]] | None) -> list[Path]:
    """Allowed folders as real paths; each must exist and be a folder."""
    out = []
    for d in dirs or ():
        real = Path(os.path.realpath(Path(d).expanduser()))
        if not real.is_dir():
            raise InputError(f"allowed folder does not exist or is not a folder: {d}")
        out.append(real)
    return out


def pick_video(
    upload: str | os.PathLike[str] | None,
    server_path: str | None,
    allow_dirs: Sequence[Path],
    max_bytes: int,
    display_name: str | None = None,
) -> str:
    """Exactly one source: the upload, or a path under an allowed folder. Returns the checked path."""
    has_path = bool(server_path and server_path.strip())
    if upload and has_path:
        raise InputError("give either an uploaded video or a server path, not both")
    if upload:
        return check_upload(upload, max_bytes, display_name)
    if has_path:
        return resolve_server_path(server_path or "", allow_dirs)
    raise InputError(
        "no video: upload one" + (" or give a path under an allowed folder" if allow_dirs else "")
    )
