"""Video reading and SeViLA frame sampling (``sevila.md`` §3, ``environment.md`` §5).

Frame pool and sampling follow the official ``load_video`` (``lavis/datasets/data_utils.py``): native
frame indices (no fps resampling), ``vlen = len(VideoReader)``, ``fps = get_avg_fps()``, the optional
``[start, end)`` window converted with ``int(t * fps)`` and clamped to ``[0, vlen]``, ``n_eff = min(n, vlen)``
segments from ``np.linspace(start, end, n_eff + 1).astype(int)``, the segment midpoint (``uniform``) or a
random frame of the segment (``random``), and padding by repeating the last index. Pixels are decoded
directly at 224x224 (no aspect preservation, no crop), then :func:`preprocess` applies ``/255`` and the
CLIP mean/std.

Decoders
--------
``decord`` (the official reader) is the default: ``VideoReader(path, ctx=cpu(0), num_threads=1, width=224,
height=224)`` + ``get_batch``. ``pyav`` is a first-class alternative and the fallback when decord cannot be
imported or fails on a file (a warning is logged on ``sevila_tools.video``; the same video is re-read,
never another one).

The PyAV reader reproduces decord's pixel path: decord pushes every decoded frame through an FFmpeg
filter graph ``[transpose...,]scale=W:H`` whose sink only accepts ``rgb24`` (FFmpeg 4.1 inside the decord
wheel; the ``scale`` filter's default swscale flags there are ``bilinear``, and the colour conversion
happens in the same swscale pass). The PyAV reader builds the same graph with PyAV's own FFmpeg (8.x):
``buffer -> [transpose] -> scale=W:H:flags=bilinear -> format=rgb24 -> buffersink`` (graph threads = 1,
like decord). ``frame.reformat(width, height, format="rgb24", interpolation="BILINEAR")`` is *not*
equivalent (max abs diff 31-32 at 224x224, 5 % of values differ), nor is the FFmpeg 8 ``scale`` default
(bicubic: max 22). At native size every variant is exact. The frame with index ``i`` is the ``i``-th
frame the decoder outputs in presentation order (sequential decode; only wanted frames are converted;
no seeking). Frame count: ``stream.frames`` when the container stores it, else the number of decoded
frames; fps: ``stream.average_rate`` (decord: packet count and ``avg_frame_rate``). Display rotation
is applied like decord (``transpose`` before ``scale``).

Measured decord 0.6.0 (FFmpeg 4.1) vs this PyAV reader (av 18.1.0, FFmpeg 8.1): max abs pixel
difference over *every* frame of synthetic clips (moving square + counter band, 30 fps):

=====================================================  ===========  =========
clip                                                    native size  224x224
=====================================================  ===========  =========
h264 (libx264 crf 18, B-frames) 320x240 .mp4 / .mkv     0            0
mpeg4 2 Mb/s 320x240 .mp4 / .avi                        0            0
h264 640x360 (downscale) and 176x144 (upscale) .mp4     0            0
h264 yuv444p .mkv, mjpeg yuvj420p .avi, vp9 .webm       0            0
h264 tagged bt709 / full range                          0            0
h264 with display rotation 90 / 270                     0            0
=====================================================  ===========  =========

i.e. the two readers are bit-identical on everything tested (``tests/test_video.py`` asserts exact
equality on h264 and mpeg4 at both sizes). Frame counts and fps agreed on all clips.

Known decord limitation: random access (``get_batch``) into H.264-in-AVI returns wrong frames (seen
with libx264 clips; sequential access is right); the PyAV reader decodes such files correctly. decord can
also hang on some files (``environment.md`` §5.1); no timeout is applied here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sevila_tools.errors import InputError, VideoError

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "Decoder",
    "SampledFrames",
    "VideoInfo",
    "check_video_path",
    "decord_available",
    "frames_at_times",
    "preprocess",
    "probe",
    "read_frames",
    "sample_frames",
    "sample_indices",
]

logger = logging.getLogger("sevila_tools.video")

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Decoder = Literal["auto", "decord", "pyav"]
_DECODERS = ("auto", "decord", "pyav")
_MODES = ("uniform", "random")


@dataclass
class VideoInfo:
    """Basic facts about a video, as the chosen decoder reports them."""

    path: str
    num_frames: int
    fps: float
    duration: float  # num_frames / fps, seconds
    width: int  # native width of decoded frames (after display rotation, as decord does)
    height: int


@dataclass
class SampledFrames:
    """Decoded frames plus the indices/timestamps they were taken at."""

    frames: np.ndarray  # (n, H, W, 3) uint8 RGB
    indices: list[int]  # native frame indices, len n (the last index repeats when padded)
    timestamps: list[float]  # indices[i] / fps, seconds
    edges: list[int]  # segment edges (native frames) used by the sampling rule
    fps: float
    num_video_frames: int
    padded: bool  # True when the video had fewer frames than requested
    decoder: str  # decoder actually used ("decord" or "pyav")


# --------------------------------------------------------------------------------------------------
# Validation helpers


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


def _check_decoder(decoder: str) -> None:
    if decoder not in _DECODERS:
        raise InputError(f"unknown video decoder {decoder!r}; choose one of {', '.join(_DECODERS)}")


def _check_size(size: int | None) -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InputError(f"frame size must be a positive integer or None, got {size!r}")


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse ``text`` to one line (for error messages)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _DecodeFailure(VideoError):
    """A decoder could not read a file; ``reason`` is the short cause, ``decoder`` who failed."""

    def __init__(self, path: Path, reason: str, decoder: str = "") -> None:
        self.path = path
        self.reason = _one_line(reason, 240)
        self.decoder = decoder
        where = f"{decoder}: " if decoder else ""
        super().__init__(f"cannot decode video: {path} ({where}{self.reason})")


# --------------------------------------------------------------------------------------------------
# Sampling rule (pure)


def sample_indices(
    num_video_frames: int,
    n: int,
    fps: float,
    start: float | None = None,
    end: float | None = None,
    mode: Literal["uniform", "random"] = "uniform",
    rng: np.random.Generator | None = None,
) -> tuple[list[int], list[int], bool]:
    """SeViLA's frame-index rule (official ``load_video``), as a pure function.

    Returns ``(indices, edges, padded)``: ``n`` native frame indices, the ``n_eff + 1`` segment edges and
    whether the result was padded because the video has fewer than ``n`` frames.

    ``start``/``end`` (seconds) become ``int(start * fps)`` / ``int(end * fps)``, clamped to ``[0, vlen]``;
    ``n_eff = min(n, vlen)``; ``edges = np.linspace(start, end, n_eff + 1).astype(int)``; segment ``j`` is
    ``[edges[j], edges[j+1])``. ``uniform``: ``(edges[j] + edges[j+1]) // 2``; ``random``: a uniform integer
    in the segment, or ``edges[j]`` when the segment is empty. The list is padded to ``n`` by repeating
    its last index. A window shorter than one frame (``int(start*fps) == int(end*fps)``) yields that one
    frame, as officially.

    Raises :class:`InputError` if ``n < 1``, the video has no frames, ``start >= end`` (both given), the
    window lies outside the video (empty after clamping), ``fps <= 0`` with a window, or ``mode`` is unknown.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"number of frames to sample must be >= 1, got {n}")
    n = int(n)
    vlen = int(num_video_frames)
    if vlen < 1:
        raise InputError(f"cannot sample frames from a video with {vlen} frames")
    if mode not in _MODES:
        raise InputError(f"unknown sampling mode {mode!r}; choose 'uniform' or 'random'")
    if start is not None and end is not None and start >= end:
        raise InputError(f"start must be before end, got start={start} end={end}")
    if (start is not None or end is not None) and not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"fps must be positive to use a start/end window, got {fps}")

    if end is not None and end <= 0:
        raise InputError(f"time window end={end} s is empty: it ends before the video starts")
    lo = 0 if start is None else int(start * fps)
    hi = vlen if end is None else int(end * fps)
    lo = max(lo, 0)
    hi = min(hi, vlen)
    if lo >= vlen or hi < lo:
        raise InputError(
            f"time window start={start} end={end} is empty for a video of {vlen} frames "
            f"({vlen / fps:.3f} s at {fps:g} fps)"
        )

    n_eff = min(n, vlen)
    edges = np.linspace(lo, hi, n_eff + 1).astype(int)
    if mode == "uniform":
        indices = [int((edges[j] + edges[j + 1]) // 2) for j in range(n_eff)]
    else:
        gen = rng if rng is not None else np.random.default_rng()
        indices = [
            int(gen.integers(edges[j], edges[j + 1])) if edges[j + 1] > edges[j] else int(edges[j])
            for j in range(n_eff)
        ]
    padded = n_eff < n
    if padded:
        indices += [indices[-1]] * (n - n_eff)
    return indices, [int(e) for e in edges], padded


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
    return _one_line(msg, 240)


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
        elif isinstance(batch, torch.Tensor):  # decord.bridge.set_bridge("torch") elsewhere
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

_Reader = Any  # _DecordReader | _PyAVReader


def _open_reader(path: Path, decoder: str, size: int | None) -> _Reader:
    _check_decoder(decoder)
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


def _validate_indices(indices: Sequence[int], num_frames: int | None, path: Path) -> list[int]:
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


def _read(reader: _Reader, indices: list[int]) -> tuple[np.ndarray, str]:
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


# --------------------------------------------------------------------------------------------------
# Public API


def probe(path: str | os.PathLike[str], decoder: Decoder = "auto") -> VideoInfo:
    """Frame count, fps, duration and native size of a video.

    Raises :class:`VideoError` for a missing/empty/unreadable file, a file without a video stream or
    without frames.
    """
    p = check_video_path(path)
    reader = _open_reader(p, decoder, None)
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


def read_frames(
    path: str | os.PathLike[str],
    indices: Sequence[int],
    decoder: Decoder = "auto",
    size: int | None = 224,
) -> tuple[np.ndarray, str]:
    """Decode frames at native frame ``indices`` (any order, duplicates allowed).

    Returns ``(frames, decoder_used)`` with ``frames`` of shape ``(len(indices), H, W, 3)`` uint8 RGB:
    ``H = W = size`` (direct resize, no aspect preservation, exactly like decord's
    ``VideoReader(width=size, height=size)``) or the native resolution when ``size`` is None.
    """
    _check_size(size)
    _check_decoder(decoder)
    p = check_video_path(path)
    reader = _open_reader(p, decoder, size)
    # PyAV without a stored frame count: out-of-range indices are detected while decoding
    idx = _validate_indices(indices, reader.known_num_frames, p)
    return _read(reader, idx)


def sample_frames(
    path: str | os.PathLike[str],
    n: int,
    start: float | None = None,
    end: float | None = None,
    decoder: Decoder = "auto",
    size: int | None = 224,
    mode: Literal["uniform", "random"] = "uniform",
    seed: int | None = None,
) -> SampledFrames:
    """Sample ``n`` frames with SeViLA's rule (:func:`sample_indices`) and decode them.

    ``start``/``end`` restrict sampling to a window in seconds; ``mode="random"`` draws one frame per
    segment (seeded by ``seed``).
    """
    _check_size(size)
    _check_decoder(decoder)
    p = check_video_path(path)
    reader = _open_reader(p, decoder, size)
    vlen = reader.num_frames
    rng = np.random.default_rng(seed) if mode == "random" else None
    indices, edges, padded = sample_indices(vlen, n, reader.fps, start, end, mode=mode, rng=rng)
    frames, used = _read(reader, indices)
    return SampledFrames(
        frames=frames,
        indices=indices,
        timestamps=[i / reader.fps for i in indices],
        edges=edges,
        fps=reader.fps,
        num_video_frames=vlen,
        padded=padded,
        decoder=used,
    )


def frames_at_times(
    path: str | os.PathLike[str],
    times: Sequence[float],
    decoder: Decoder = "auto",
    size: int | None = 224,
) -> SampledFrames:
    """Decode the frames shown at the given times (seconds): index ``min(int(round(t * fps)), vlen - 1)``.

    Raises :class:`InputError` for an empty list or a time outside ``[0, duration]``.
    """
    _check_size(size)
    _check_decoder(decoder)
    if len(times) == 0:
        raise InputError("no times given")
    p = check_video_path(path)
    reader = _open_reader(p, decoder, size)
    vlen = reader.num_frames
    fps = reader.fps
    duration = vlen / fps
    indices: list[int] = []
    for t in times:
        t = float(t)
        if not math.isfinite(t) or t < 0 or t > duration:
            raise InputError(f"time {t} s is outside the video (0 to {duration:.3f} s): {p}")
        indices.append(min(int(round(t * fps)), vlen - 1))
    frames, used = _read(reader, indices)
    return SampledFrames(
        frames=frames,
        indices=indices,
        timestamps=[i / fps for i in indices],
        edges=[],
        fps=fps,
        num_video_frames=vlen,
        padded=False,
        decoder=used,
    )


def preprocess(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames ``(n, H, W, 3)`` -> float32 ``(n, 3, H, W)``: ``/255``, then CLIP mean/std.

    No resizing (frames are decoded at the model size). Accepts numpy arrays or torch tensors (any device).
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if not isinstance(x, torch.Tensor):
        raise InputError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if x.dtype != torch.uint8:
        raise InputError(f"frames must be uint8, got {x.dtype}")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"frames must have shape (n, H, W, 3), got {tuple(x.shape)}")
    # NCHW layout while still uint8 (1 byte per value), one conversion, then normalise in place: the same float32
    # operations in the same order as (x / 255 - mean) / std, ~4x faster than converting a permuted view
    x = x.permute(0, 3, 1, 2).contiguous().to(torch.float32)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return x.div_(255.0).sub_(mean).div_(std)
