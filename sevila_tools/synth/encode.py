"""Writing frames as an H.264 mp4 that is byte-identical for identical frames (one encoder thread)."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sevila_tools.synthetic import encode_frames

#: x264 settings: one thread and no wall-clock dependent decisions, so a seed gives the same bytes
X264_OPTIONS = {"preset": "veryfast", "crf": "20", "threads": "1", "sc_threshold": "0"}


def rgb_to_yuv420p(img: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 -> planar yuv420p ``(H * 3 // 2, W)`` (BT.601 limited range, chroma averaged
    over 2 x 2 pixels). Done here rather than by FFmpeg's scaler, whose SIMD paths depend on buffer alignment
    and would make the bytes depend on what was allocated before."""
    x = img.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape

    def half(c: np.ndarray) -> np.ndarray:
        return (c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2]) * 0.25

    planes = [y.ravel(), half(cb).ravel(), half(cr).ravel()]
    out = np.clip(np.floor(np.concatenate(planes) + 0.5), 0, 255).astype(np.uint8)
    return out.reshape(h * 3 // 2, w)


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float, width: int, height: int,
              keyint: int | None = None) -> Path:
    """Encode RGB frames ``(H, W, 3)`` uint8 to ``path`` (libx264, yuv420p, a keyframe every ``keyint``
    frames, by default every 2 seconds); the file is written to a temporary name and renamed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    container = av.open(str(tmp), mode="w", format="mp4", options={"fflags": "+bitexact"})
    try:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                      options=dict(X264_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = keyint or max(1, int(round(2 * fps)))
        stream.codec_context.thread_count = 1
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        encode_frames(container, stream,
                      (av.VideoFrame.from_ndarray(rgb_to_yuv420p(img), format="yuv420p") for img in frames))
    finally:
        container.close()
    tmp.replace(path)
    return path
