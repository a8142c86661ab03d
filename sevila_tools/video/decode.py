"""Sequential frame readers: decord and PyAV with the same pixels, decoder choice and fallback."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sevila_tools.errors import InputError, VideoError
from sevila_tools.video.base import (
    _DecodeFailure,
    check_decoder,
    logger,
    one_line,
)

__all__ = ["Reader", "decord_available", "open_reader", "read_with_fallback", "validate_indices"]

# --------------------------------------------------------------------------------------------------
# decord backend

_decord_module: Any = None
_decord_checked = False
_stderr_lock = threading.Lock()


def _import_decord() -> Any:
    """Return the decord module, or ``None`` if it cannot be imported (cached)."""
    global _decord_module, _decord_checked
    if not _decord_checked:
        _decord_checked = True
        try:
            import decord  # noqa: PLC0415

            _decord_module = decord
        except Exception as exc:  # ImportError, OSError from a broken shared library...
            logger.debug("decord not importable: %s", exc)
            _decord_module = None
    return _decord_module


def decord_available() -> bool:
    """True when decord can be imported on this machine (x86_64 wheels only)."""
    return _import_decord() is not None


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[list[str]]:
    """Redirect file descriptor 2 to a temporary file while decord runs (its C++/FFmpeg log lines).

    Yields a list that receives the captured lines afterwards. Serialised by a lock because the
    redirection is process-wide; if fd 2 cannot be duplicated, nothing is captured.
    """
    lines: list[str] = []
    with _stderr_lock:
        try:
            saved = os.dup(2)
        except OSError:
            yield lines
            return
        with tempfile.TemporaryFile() as tmp:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                text = tmp.read().decode("utf-8", errors="replace")
                lines.extend(line for line in text.splitlines() if line.strip())
                for line in lines:
                    logger.debug("decord: %s", line)


def _strip_dmlc_prefix(line: str) -> str:
    """``[21:49:36] /src/video/video_reader.cc:83: ERROR opening: x`` -> ``ERROR opening: x``."""
    line = line.strip()
    while line.startswith("[") and ".cc:" in line:  # nested when re-raised across threads
        rest = line.split(".cc:", 1)[1]
        line = (rest.split(": ", 1)[1] if ": " in rest else rest).strip()
    return line


def _decord_reason(exc: BaseException, captured: list[str]) -> str:
    """One-line reason from a decord exception plus the most useful captured log line."""
    msg = _strip_dmlc_prefix((str(exc) or type(exc).__name__).strip().split("\n")[0])
    errors = [_strip_dmlc_prefix(x) for x in captured if "error" in x.lower() or "failed" in x.lower()]
    if errors and errors[-1] not in msg:
        msg = errors[-1] if msg.startswith("Error reading") else f"{msg}; {errors[-1]}"
    return one_line(msg, 240)


class _DecordReader:
    name = "decord"

    def __init__(self, path: Path, size: int | None) -> None:
        decord = _import_decord()
        if decord is None:
            raise _DecodeFailure(path, "decord is not installed", "decord")
        self.path = path
        self.size = size
        side = -1 if size is None else size
        error: BaseException | None = None
        with _native_stderr_captured() as captured:
            try:
                self.vr = decord.VideoReader(
                    str(path), ctx=decord.cpu(0), num_threads=1, width=side, height=side
                )
                self.num_frames = len(self.vr)
                self.fps = float(self.vr.get_avg_fps())
            except Exception as exc:  # DECORDError, RuntimeError, AssertionError (0 frames)
                error = exc
        if error is not None:
            raise _DecodeFailure(path, _decord_reason(error, captured), "decord") from error
        if self.num_frames < 1:
            raise _DecodeFailure(path, "no frames", "decord")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise _DecodeFailure(path, f"no valid frame rate: {self.fps}", "decord")

    def native_size(self) -> tuple[int, int]:
        """(width, height) of native decoded frames (decodes frame 0 when opened with a resize)."""
        if self.size is not None:
            return _DecordReader(self.path, None).native_size()
        frame = self._get([0])[0]
        return int(frame.shape[1]), int(frame.shape[0])

    def _get(self, indices: list[int]) -> np.ndarray:
        error: BaseException | None = None
        with _native_stderr_captured() as captured:
            try:
                batch = self.vr.get_batch(indices)
            except Exception as exc:  # DECORDError, IndexError...
                error = exc
        if error is not None:
            raise _DecodeFailure(self.path, _decord_reason(error, captured), "decord") from error
        if hasattr(batch, "asnumpy"):
            arr = batch.asnumpy()
        elif hasattr(batch, "cpu"):  # a torch tensor: decord.bridge.set_bridge("torch") elsewhere
            arr = batch.cpu().numpy()
        else:
            arr = np.asarray(batch)
        return np.ascontiguousarray(arr, dtype=np.uint8)

    def get(self, indices: list[int]) -> np.ndarray:
        return self._get(indices)

    @property
    def known_num_frames(self) -> int:
        return self.num_frames


# --------------------------------------------------------------------------------------------------
# PyAV backend


def _av_error(path: Path, exc: BaseException) -> _DecodeFailure:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return _DecodeFailure(path, reason, "pyav")


def _rotation_filters(rotation: int) -> list[tuple[str, str]]:
    """decord's rotation handling: theta = -displaymatrix rotation (mod 360) -> transpose filters."""
    theta = (-int(round(rotation))) % 360
    if theta == 90:
        return [("transpose", "1")]
    if theta == 180:
        return [("transpose", "1"), ("transpose", "1")]
    if theta == 270:
        return [("transpose", "2")]
    return []


class _FrameConverter:
    """Decoded ``av.VideoFrame`` -> (H, W, 3) uint8 RGB through decord's filter graph."""

    def __init__(self, size: int | None, time_base: Fraction | None) -> None:
        self.size = size
        self.time_base = time_base if time_base else Fraction(1, 1000)
        self.key: tuple | None = None
        self.graph: Any = None

    def _build(self, frame: Any, rotation: int) -> None:
        import av  # noqa: PLC0415

        graph = av.filter.Graph()
        graph.threads = 1
        src = graph.add_buffer(
            width=frame.width, height=frame.height, format=frame.format, time_base=self.time_base
        )
        nodes = [src]
        rot = _rotation_filters(rotation)
        for name, args in rot:
            nodes.append(graph.add(name, args))
        if self.size is None:
            w, h = (frame.height, frame.width) if len(rot) == 1 else (frame.width, frame.height)
        else:
            w = h = self.size
        nodes.append(graph.add("scale", f"{w}:{h}:flags=bilinear"))
        nodes.append(graph.add("format", "rgb24"))
        nodes.append(graph.add("buffersink"))
        for a, b in zip(nodes[:-1], nodes[1:], strict=True):
            a.link_to(b)
        graph.configure()
        self.graph = graph

    def __call__(self, frame: Any) -> np.ndarray:
        rotation = int(getattr(frame, "rotation", 0) or 0)
        key = (frame.width, frame.height, frame.format.name, rotation)
        if key != self.key:
            self._build(frame, rotation)
            self.key = key
        self.graph.push(frame)
        out = self.graph.pull()
        return out.to_ndarray(format="rgb24")


class _PyAVReader:
    name = "pyav"

    def __init__(self, path: Path, size: int | None) -> None:
        import av  # noqa: PLC0415

        self.path = path
        self.size = size
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise _DecodeFailure(path, "no video stream", "pyav")
                stream = container.streams.video[0]
                self._stream_frames = int(stream.frames or 0)
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.fps = float(rate) if rate else 0.0
                self.time_base = stream.time_base
        except VideoError:
            raise
        except Exception as exc:  # av.error.FFmpegError and friends
            raise _av_error(path, exc) from exc
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise _DecodeFailure(path, "no valid frame rate", "pyav")
        self._num_frames: int | None = self._stream_frames if self._stream_frames > 0 else None
        self._native: tuple[int, int] | None = None

    @contextlib.contextmanager
    def _frames(self) -> Iterator[Iterator[Any]]:
        import av  # noqa: PLC0415

        try:
            container = av.open(str(self.path))
        except Exception as exc:
            raise _av_error(self.path, exc) from exc
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"

            def gen() -> Iterator[Any]:
                try:
                    yield from container.decode(stream)
                except av.error.FFmpegError as exc:
                    raise _av_error(self.path, exc) from exc

            yield gen()
        finally:
            container.close()

    @property
    def num_frames(self) -> int:
        """Frame count: ``stream.frames`` when stored, else counted by decoding the whole stream."""
        if self._num_frames is None:
            count = 0
            with self._frames() as frames:
                for _ in frames:
                    count += 1
            self._num_frames = count
        if self._num_frames < 1:
            raise _DecodeFailure(self.path, "no frames", "pyav")
        return self._num_frames

    @property
    def known_num_frames(self) -> int | None:
        """The frame count if known without decoding the whole stream, else None."""
        return self._num_frames

    def native_size(self) -> tuple[int, int]:
        if self._native is None:
            conv = _FrameConverter(None, self.time_base)
            with self._frames() as frames:
                first = next(iter(frames), None)
                if first is None:
                    raise _DecodeFailure(self.path, "no frames", "pyav")
                img = conv(first)
            self._native = (int(img.shape[1]), int(img.shape[0]))
        return self._native

    def get(self, indices: list[int]) -> np.ndarray:
        wanted = sorted(set(indices))
        got: dict[int, np.ndarray] = {}
        conv = _FrameConverter(self.size, self.time_base)
        pos = 0
        decoded = 0
        with self._frames() as frames:
            for i, frame in enumerate(frames):
                decoded = i + 1
                if i == wanted[pos]:
                    try:
                        got[i] = conv(frame)
                    except Exception as exc:  # filter-graph errors (av.error.*)
                        raise _av_error(self.path, exc) from exc
                    pos += 1
                    if pos == len(wanted):
                        break
        if pos < len(wanted):
            raise VideoError(
                f"frame index {wanted[pos]} out of range: {self.path} decodes to {decoded} frames"
            )
        return np.stack([got[i] for i in indices])


# --------------------------------------------------------------------------------------------------
# Reader selection with fallback

Reader = Any  # _DecordReader | _PyAVReader


def open_reader(path: Path, decoder: str, size: int | None) -> Reader:
    """Open ``path`` with ``decoder`` (``auto``/``decord`` fall back to PyAV with a warning)."""
    check_decoder(decoder)
    if decoder in ("auto", "decord"):
        if not decord_available():
            if decoder == "decord":
                logger.warning("decord is not importable; reading %s with PyAV instead", path)
            return _PyAVReader(path, size)
        try:
            return _DecordReader(path, size)
        except _DecodeFailure as exc:
            logger.warning("decord cannot open %s (%s); falling back to PyAV", path, exc.reason)
            try:
                return _PyAVReader(path, size)
            except _DecodeFailure as exc2:
                raise _DecodeFailure(path, f"pyav: {exc2.reason}; decord: {exc.reason}") from exc2
    return _PyAVReader(path, size)


def validate_indices(indices: Sequence[int], num_frames: int | None, path: Path) -> list[int]:
    """Indices as ints; :class:`InputError` for non-integers/negatives, :class:`VideoError` past the end."""
    out: list[int] = []
    for i in indices:
        if isinstance(i, bool) or int(i) != i:
            raise InputError(f"frame indices must be integers, got {i!r}")
        out.append(int(i))
    if not out:
        raise InputError("no frame indices given")
    bad = [i for i in out if i < 0]
    if bad:
        raise InputError(f"frame indices must be >= 0, got {bad[0]}")
    over = [i for i in out if num_frames is not None and i >= num_frames]
    if over:
        raise VideoError(f"frame index {max(over)} out of range: {path} has {num_frames} frames")
    return out


def read_with_fallback(reader: Reader, indices: list[int]) -> tuple[np.ndarray, str]:
    """Read frames; if decord fails while decoding, re-read the same video with PyAV (warning)."""
    try:
        return reader.get(indices), reader.name
    except _DecodeFailure as exc:
        if reader.name != "decord":
            raise
        logger.warning("decord failed while decoding %s (%s); falling back to PyAV", reader.path, exc.reason)
        try:
            fallback = _PyAVReader(reader.path, reader.size)
            return fallback.get(indices), fallback.name
        except _DecodeFailure as exc2:
            raise _DecodeFailure(reader.path, f"pyav: {exc2.reason}; decord: {exc.reason}") from exc2
