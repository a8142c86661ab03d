"""Run-level checks of the Moment-DETR selector: can it run, and which videos exceed its 150-s range."""

from __future__ import annotations

import os
from typing import Any

from sevila_tools.errors import InputError, VideoError
from sevila_tools.selectors.moment_detr.clip_grid import MAX_CLIPS, clip_grid


def unavailable_reason(options: dict[str, Any], random_weights: bool) -> str | None:
    """A real run needs a checkpoint; random-weight runs use a tiny random Moment-DETR."""
    if options.get("mdetr_checkpoint") is None and not random_weights:
        return "no --mdetr-checkpoint (only tiny-random runs it without one)"
    return None


def long_video_report(
    segments: list[tuple[str, float | None, float | None]], options: dict[str, Any], decoder: str
) -> dict[str, Any]:
    """How many (video, window) segments exceed 75 clips and what the ``long_video`` rule does with them;
    ``refuse`` with such segments is a one-line error before anything runs."""
    from sevila_tools.video import probe, sample_indices

    rule = options.get("long_video", "refuse")
    affected: list[str] = []
    unknown = 0
    for video, start, end in segments:
        try:
            info = probe(video, decoder=decoder)  # type: ignore[arg-type]
            _, edges, _ = sample_indices(info.num_frames, 1, info.fps, start=start, end=end, empty_window="start_frame")
            if clip_grid(edges[0], edges[-1], info.fps).num_clips > MAX_CLIPS:
                affected.append(video)
        except (VideoError, InputError):
            unknown += 1
    first = [os.path.basename(v) for v in affected[:5]]
    if rule == "refuse" and affected:
        raise InputError(
            f"{len(affected)} video(s) exceed Moment-DETR's {MAX_CLIPS} clips (150 s; first: {', '.join(first[:3])}) "
            "and --long-video refuse stops on them; use --long-video sliding or stride"
        )
    note = (f"long_video={rule}, frame_strategy={options.get('frame_strategy', 'top_window_uniform')}; "
            f"{len(affected)} of {len(segments)} videos exceed {MAX_CLIPS} clips (150 s).")
    return {"long_video": rule, "segments": len(segments), "affected_videos": len(affected),
            "first_affected": first, "unreadable": unknown, "max_clips": MAX_CLIPS, "note": note}
