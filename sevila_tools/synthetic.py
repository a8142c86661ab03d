"""Synthetic videos written with PyAV (``sevila demo``, ``sevila bench``, the test suite).

Two kinds of clip:

- :func:`make_video`: a coloured square moving over a grey background plus a black/white
  **frame-counter band** across the top of every frame. The band encodes the frame index as
  :data:`COUNTER_BITS` large blocks (most significant bit first, white = 1) that survive lossy
  compression, so :func:`decode_counter` recovers the true index from a decoded, *native-resolution*
  frame and frame-index logic can be checked from pixels.
- :func:`make_scene_video`: solid-colour segments, so that different "scenes" look clearly different
  (useful for keyframe-selector tests).

Clips are meant to be small (<= 320x240, <= 10 s); a 10-s 320x240 clip is written in well under a
second.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "COUNTER_BITS",
    "counter_band_height",
    "decode_counter",
    "draw_counter",
    "make_scene_video",
    "make_video",
    "make_zero_frame_video",
    "synthetic_frame",
]

#: Number of bits of the frame-counter band (indices up to 65535).
COUNTER_BITS = 16

_CODEC_ALIASES = {"h264": "libx264", "x264": "libx264", "libx264": "libx264", "mpeg4": "mpeg4"}


def counter_band_height(height: int) -> int:
    """Height in pixels of the frame-counter band for a frame of the given height."""
    return max(8, (height // 8) // 2 * 2)


def _bit_spans(width: int) -> list[tuple[int, int]]:
    """Column span ``[x0, x1)`` of each counter bit (MSB first); the band covers the full width."""
    edges = np.linspace(0, width, COUNTER_BITS + 1).astype(int)
    return [(int(edges[b]), int(edges[b + 1])) for b in range(COUNTER_BITS)]


def draw_counter(frame: np.ndarray, index: int) -> np.ndarray:
    """Draw the frame-counter band encoding ``index`` in place into an RGB frame (H, W, 3) uint8."""
    if not 0 <= index < 2**COUNTER_BITS:
        raise ValueError(f"frame index {index} does not fit in {COUNTER_BITS} bits")
    band = counter_band_height(frame.shape[0])
    for b, (x0, x1) in enumerate(_bit_spans(frame.shape[1])):
        bit = (index >> (COUNTER_BITS - 1 - b)) & 1
        frame[:band, x0:x1] = 255 if bit else 0
    return frame


def decode_counter(frame: np.ndarray) -> int:
    """Read back the frame index from a decoded native-resolution RGB frame (H, W, 3).

    Each bit is the mean luminance of the inner part of its block (a margin of a quarter block on
    every side is ignored, so ringing at block edges does not matter), thresholded at 128.
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got shape {frame.shape}")
    band = counter_band_height(frame.shape[0])
    gray = frame[:band].astype(np.float32).mean(axis=2)
    my = max(1, band // 4)
    value = 0
    for x0, x1 in _bit_spans(frame.shape[1]):
        mx = max(1, (x1 - x0) // 4)
        block = gray[my : band - my, x0 + mx : x1 - mx]
        value = (value << 1) | int(block.mean() >= 128.0)
    return value


def synthetic_frame(index: int, num_frames: int, width: int, height: int) -> np.ndarray:
    """RGB frame ``index`` of :func:`make_video`: moving coloured square + counter band."""
    img = np.full((height, width, 3), 96, dtype=np.uint8)
    band = counter_band_height(height)
    # smooth background gradient below the band, so frames are not flat
    ramp = np.linspace(40, 200, width, dtype=np.float32)
    img[band:, :, 2] = ramp.astype(np.uint8)[None, :]
    side = max(8, min(width, height - band) // 4)
    t = index / max(1, num_frames - 1)
    x = int(round(t * (width - side)))
    y = band + int(round((0.5 + 0.4 * np.sin(2 * np.pi * t)) * (height - band - side)))
    hue = (index * 7) % 256
    img[y : y + side, x : x + side] = (255 - hue // 2, hue, 64 + hue // 4)
    return draw_counter(img, index)


def _open_output(
    path: Path,
    codec: str,
    fps: int | float | Fraction,
    width: int,
    height: int,
    gop_size: int,
    crf: int,
    bit_rate: int,
) -> tuple[av.container.OutputContainer, av.VideoStream]:
    codec = _CODEC_ALIASES.get(codec, codec)
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    container = av.open(str(path), mode="w")
    options: dict[str, str] = {}
    if codec == "libx264":
        options = {"preset": "veryfast", "crf": str(crf), "keyint_min": "1", "sc_threshold": "0"}
    stream = container.add_stream(codec, rate=rate, options=options)
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    stream.gop_size = gop_size
    if codec != "libx264":
        stream.bit_rate = bit_rate
    return container, stream


def _write_frames(
    container: av.container.OutputContainer, stream: av.VideoStream, frames: Sequence[np.ndarray] | np.ndarray
) -> None:
    try:
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()


def make_video(
    path: str | Path,
    num_frames: int = 90,
    fps: int | float | Fraction = 30,
    width: int = 320,
    height: int = 240,
    codec: str = "libx264",
    gop_size: int = 15,
    crf: int = 18,
    bit_rate: int = 2_000_000,
) -> Path:
    """Write a synthetic clip with a moving square and a frame-counter band; return its path.

    The container follows the file extension (``.mp4``, ``.mkv``, ``.avi``, ``.mov``...).
    ``codec`` is ``"libx264"`` (preset veryfast, ``crf``, keyframe every ``gop_size`` frames) or
    ``"mpeg4"`` (``bit_rate`` bits/s). Frame ``i`` carries ``i`` in its counter band
    (see :func:`decode_counter`). Use ``mpeg4`` for ``.avi``: decord's random access into H.264-in-AVI
    returns wrong frames (decoded from the wrong keyframe), whereas sequential decoding is fine.
    """
    path = Path(path)
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    path.parent.mkdir(parents=True, exist_ok=True)
    container, stream = _open_output(path, codec, fps, width, height, gop_size, crf, bit_rate)
    frames = (synthetic_frame(i, num_frames, width, height) for i in range(num_frames))
    _write_frames(container, stream, frames)
    return path


def make_scene_video(
    path: str | Path,
    scenes: Sequence[tuple[int, tuple[int, int, int]]],
    fps: int | float | Fraction = 30,
    width: int = 160,
    height: int = 120,
    codec: str = "libx264",
    gop_size: int = 15,
    crf: int = 18,
    counter: bool = False,
) -> Path:
    """Write solid-colour segments ``[(num_frames, (r, g, b)), ...]`` one after another; return the path.

    With ``counter=True`` the frame-counter band is drawn on top as in :func:`make_video`.
    """
    path = Path(path)
    if not scenes or any(n < 1 for n, _ in scenes):
        raise ValueError("scenes must be a non-empty list of (num_frames >= 1, (r, g, b))")
    path.parent.mkdir(parents=True, exist_ok=True)
    container, stream = _open_output(path, codec, fps, width, height, gop_size, crf, 2_000_000)

    def frames():
        index = 0
        for n, rgb in scenes:
            for _ in range(n):
                img = np.empty((height, width, 3), dtype=np.uint8)
                img[:] = np.asarray(rgb, dtype=np.uint8)
                if counter:
                    draw_counter(img, index)
                index += 1
                yield img

    _write_frames(container, stream, frames())
    return path


def make_zero_frame_video(path: str | Path, codec: str = "libx264") -> Path:
    """Write a container with a video stream header but no frames (an invalid, zero-frame video)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    container, stream = _open_output(path, codec, 30, 64, 64, 15, 18, 2_000_000)
    try:
        container.start_encoding()
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return path
