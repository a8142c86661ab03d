"""Synthetic clips with a frame-counter band (``sevila demo``, ``sevila bench``, tests).

The clip layout and the encoder settings are described in ``docs/video.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

__all__ = [
    "COUNTER_BITS",
    "VFR_PATTERN",
    "counter_band_height",
    "decode_counter",
    "draw_counter",
    "make_realistic_video",
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


def _texture(width: int, height: int) -> np.ndarray:
    """A fixed blocky noise texture twice the frame width (seeded), panned by textured clips."""
    rng = np.random.default_rng(1234)
    small = rng.integers(40, 216, size=((height + 3) // 4, (2 * width + 3) // 4, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)[:height, : 2 * width]


def synthetic_frame(
    index: int, num_frames: int, width: int, height: int, texture: np.ndarray | None = None
) -> np.ndarray:
    """RGB frame ``index`` of :func:`make_video`: moving coloured square + counter band.

    With ``texture`` (from ``_texture``) the background is that texture panned 2 pixels per frame
    (detail and motion everywhere, as in camera footage) instead of a flat gradient.
    """
    img = np.full((height, width, 3), 96, dtype=np.uint8)
    band = counter_band_height(height)
    if texture is not None:
        x0 = (2 * index) % width
        img[band:] = texture[band:height, x0 : x0 + width]
    else:  # smooth background gradient below the band, so frames are not flat
        ramp = np.linspace(40, 200, width, dtype=np.float32)
        img[band:, :, 2] = ramp.astype(np.uint8)[None, :]
    side = max(8, min(width, height - band) // 4)
    t = index / max(1, num_frames - 1)
    x = int(round(t * (width - side)))
    y = band + int(round((0.5 + 0.4 * np.sin(2 * np.pi * t)) * (height - band - side)))
    hue = (index * 7) % 256
    img[y : y + side, x : x + side] = (255 - hue // 2, hue, 64 + hue // 4)
    return draw_counter(img, index)


#: Frame-duration pattern of variable-frame-rate clips, in quarters of the nominal frame period (mean 4).
VFR_PATTERN = (4, 2, 6, 3, 5)


def _open_output(
    path: Path,
    codec: str,
    fps: int | float | Fraction,
    width: int,
    height: int,
    gop_size: int,
    crf: int,
    bit_rate: int,
    *,
    preset: str = "veryfast",
    bframes: int | None = None,
    scenecut: bool = False,
    rotation: int = 0,
    vfr: bool = False,
) -> tuple[av.container.OutputContainer, av.VideoStream]:
    codec = _CODEC_ALIASES.get(codec, codec)
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    container = av.open(str(path), mode="w")
    options: dict[str, str] = {}
    if codec == "libx264":
        options = {"preset": preset, "crf": str(crf)}
        if not scenecut:  # a keyframe exactly every gop_size frames
            options.update(keyint_min="1", sc_threshold="0")
        if bframes is not None:  # a fixed B-frame pattern (x264 would drop B-frames on such smooth motion)
            options.update(bf=str(bframes), b_strategy="0")
    stream = container.add_stream(codec, rate=rate, options=options)
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    stream.gop_size = gop_size
    if codec != "libx264":
        stream.bit_rate = bit_rate
        if bframes:
            stream.codec_context.max_b_frames = bframes
    if vfr:
        stream.codec_context.time_base = 1 / (rate * 4)
    if rotation % 360:
        stream.set_display_rotation(rotation % 360)
    return container, stream


def _write_frames(
    container: av.container.OutputContainer,
    stream: av.VideoStream,
    frames: Iterable[np.ndarray],
    vfr: bool = False,
) -> None:
    def video_frames() -> Iterator[av.VideoFrame]:
        pts = 0
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if vfr:
                frame.pts = pts
                frame.time_base = stream.codec_context.time_base
                pts += VFR_PATTERN[i % len(VFR_PATTERN)]
            yield frame

    try:
        encode_frames(container, stream, video_frames())
    finally:
        container.close()


def encode_frames(container: av.container.OutputContainer, stream: av.VideoStream,
                  frames: Iterable[av.VideoFrame]) -> None:
    """Encode ``frames`` into ``stream``, mux every packet into ``container`` and flush the encoder (the caller
    opens and closes the container)."""
    for frame in frames:
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


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
    *,
    seconds: float | None = None,
    preset: str = "veryfast",
    bframes: int | None = None,
    scenecut: bool = False,
    rotation: int = 0,
    vfr: bool = False,
    texture: bool = False,
) -> Path:
    """Write a synthetic clip with a moving square and a frame-counter band; return its path.

    The container follows the file extension (``.mp4``, ``.mkv``, ``.avi``, ``.mov``...).
    ``codec`` is ``"libx264"`` (``preset``, ``crf``, B-frames as the preset sets them unless ``bframes``
    is given) or ``"mpeg4"`` (``bit_rate`` bits/s, ``bframes`` B-frames, default none). A keyframe comes
    every ``gop_size`` frames; with ``scenecut=True`` x264 keeps its own keyframe decisions (scene cuts,
    ``keyint_min``) as in ordinary encodes. ``seconds`` sets the length instead of ``num_frames``.
    ``rotation`` stores a display rotation (degrees counter-clockwise; mp4/mov/mkv). ``vfr`` gives frames
    the irregular durations of :data:`VFR_PATTERN` (same mean frame rate); ``texture`` pans a noise
    texture behind the square (a realistic bitrate). Frame ``i`` in presentation
    order carries ``i`` in its counter band (see :func:`decode_counter`). Use ``mpeg4`` for ``.avi``:
    decord's random access into H.264-in-AVI returns wrong frames, whereas sequential decoding is fine.
    """
    path = Path(path)
    if seconds is not None:
        num_frames = int(round(seconds * float(fps)))
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    path.parent.mkdir(parents=True, exist_ok=True)
    container, stream = _open_output(
        path, codec, fps, width, height, gop_size, crf, bit_rate,
        preset=preset, bframes=bframes, scenecut=scenecut, rotation=rotation, vfr=vfr,
    )  # fmt: skip
    tex = _texture(width, height) if texture else None
    frames = (synthetic_frame(i, num_frames, width, height, tex) for i in range(num_frames))
    _write_frames(container, stream, frames, vfr=vfr)
    return path


def make_realistic_video(
    path: str | Path,
    width: int = 640,
    height: int = 360,
    seconds: float = 120.0,
    fps: int | float | Fraction = 30,
    codec: str = "libx264",
    **kwargs: Any,
) -> Path:
    """A clip encoded like an ordinary download: x264 veryfast crf 23, keyint 250 with scene cuts,
    3 B-frames (pyramid), a textured moving background.

    For decoding benchmarks (e.g. 640x360 for 120 s, 640x480 for 44 s, 10 minutes); ``kwargs`` go to
    :func:`make_video` (``rotation``, ``vfr``, ``crf``...). ``codec="mpeg4"`` uses 2 B-frames.
    """
    opts: dict[str, Any] = {"gop_size": 250, "scenecut": True, "crf": 23, "bframes": 3, "texture": True}
    if _CODEC_ALIASES.get(codec, codec) == "mpeg4":
        opts["bframes"] = 2
    opts.update(kwargs)
    return make_video(path, fps=fps, width=width, height=height, codec=codec, seconds=seconds, **opts)


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
