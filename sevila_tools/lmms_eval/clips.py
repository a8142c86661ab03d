"""A clip of exactly the selected frames, each at its original time: how ``sevila_keyframes`` hands frames to an
inner lmms-eval model that reads a video path."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

#: sub-steps of one source frame in the clip's time base (room for a frame a file names twice)
TICKS = 16


def write_clip(
    video: str, frames: Sequence[int], fps: float, out: Path, decoder: str = "auto", crf: int = 10
) -> Path:
    """Write the native ``frames`` of ``video`` (native resolution, temporal order) to ``out`` (H.264 mp4, every
    frame a keyframe), frame ``i`` shown at ``frames[i] / fps`` seconds as in the source; a frame named twice is
    shown 1/16 frame later. Odd sizes lose their last row or column (4:2:0 needs even sizes)."""
    from sevila_tools.files import atomic_write
    from sevila_tools.video import read_frames

    pixels, _ = read_frames(video, list(frames), decoder=decoder, size=None)
    return atomic_write(out, lambda tmp: _encode(tmp, frames, pixels, Fraction(fps).limit_denominator(1001), crf))


def _encode(path: Path, frames: Sequence[int], pixels: np.ndarray, rate: Fraction, crf: int) -> None:
    import av

    from sevila_tools.synthetic import encode_frames

    h, w = pixels.shape[1] // 2 * 2, pixels.shape[2] // 2 * 2
    scale = str(rate.numerator * TICKS)  # ticks per second of the track and of the movie (its edit list), so the
    container = av.open(str(path), mode="w", format="mp4",  # first frame's start survives exactly (not in ms)
                        container_options={"movie_timescale": scale, "video_track_timescale": scale})
    try:
        stream = container.add_stream("libx264", rate=rate, options={"crf": str(crf), "bf": "0", "g": "1"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = 1 / (rate * TICKS)
        encode_frames(container, stream, _timed(frames, pixels, w, h, stream.codec_context.time_base))
    finally:
        container.close()


def _timed(frames: Sequence[int], pixels: np.ndarray, w: int, h: int, time_base: Fraction) -> Iterator[Any]:
    """The clip's frames, each at its source frame number in ticks (a repeated number one tick later)."""
    import av

    last = -1
    for idx, img in zip(frames, pixels, strict=True):
        last = max(int(idx) * TICKS, last + 1)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="rgb24")
        frame.pts, frame.time_base = last, time_base
        yield frame


def clip_times(path: str | Path) -> list[float]:
    """Presentation times (seconds) of every frame of a clip, in order (tests and checks)."""
    import av

    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]
