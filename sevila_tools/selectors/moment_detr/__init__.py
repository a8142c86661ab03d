"""Moment-DETR (CLIP-only checkpoint of ``jayleicn/moment_detr``) re-implemented as a keyframe selector.

Layout, pipeline, long-video rules and frame strategies: ``docs/selectors.md``.
"""

from __future__ import annotations

from sevila_tools.selectors.moment_detr.checkpoint import (
    check_state_dict,
    load_moment_detr,
    save_moment_detr,
    shared_moment_detr,
)
from sevila_tools.selectors.moment_detr.clip_grid import (
    CLIP_LEN,
    DEFAULT_LONG_VIDEO,
    LONG_VIDEO_RULES,
    MAX_CLIPS,
    ClipGrid,
    MomentDETRPrediction,
    clip_grid,
    postprocess,
    run_moment_detr,
    tef,
)
from sevila_tools.selectors.moment_detr.frames import (
    FRAME_STRATEGIES,
    frames_top_window_uniform,
    frames_topk_saliency,
    midpoint_indices,
    snap_to_candidates,
)
from sevila_tools.selectors.moment_detr.model import (
    DEFAULT_OPT,
    MomentDETR,
    PositionEmbeddingSine,
    build_moment_detr,
    build_tiny_moment_detr,
    resolve_opt,
)
from sevila_tools.selectors.moment_detr.selector import (
    MAX_QUERY_TOKENS,
    TEXT_MODES,
    MomentDETROptions,
    MomentDETRSelector,
)

__all__ = [
    "CLIP_LEN",
    "DEFAULT_LONG_VIDEO",
    "DEFAULT_OPT",
    "FRAME_STRATEGIES",
    "LONG_VIDEO_RULES",
    "MAX_CLIPS",
    "MAX_QUERY_TOKENS",
    "TEXT_MODES",
    "ClipGrid",
    "MomentDETR",
    "MomentDETROptions",
    "MomentDETRPrediction",
    "MomentDETRSelector",
    "PositionEmbeddingSine",
    "build_moment_detr",
    "build_tiny_moment_detr",
    "check_state_dict",
    "clip_grid",
    "frames_top_window_uniform",
    "frames_topk_saliency",
    "load_moment_detr",
    "midpoint_indices",
    "postprocess",
    "resolve_opt",
    "run_moment_detr",
    "save_moment_detr",
    "shared_moment_detr",
    "snap_to_candidates",
    "tef",
]
