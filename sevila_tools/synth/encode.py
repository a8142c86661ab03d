"""Writing frames as an H.264 mp4 that is byte-identical for identical frames (one encoder thread)."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: x264 settings: one thread and no wall-clock dependent decisions, so a seed gives the same bytes
X264_OPTIONS = {"preset": "veryfast", "crf": "20", "threads": "1", "sc_threshold": "0"}


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
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    tmp.replace(path)
    return path
