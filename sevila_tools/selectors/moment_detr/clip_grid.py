"""Moment-DETR over a video segment: the 2-s clip grid, TEF, the long-video rules, and post-processing of
the outputs into windows and saliency (``docs/selectors.md``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sevila_tools.errors import InputError
from sevila_tools.selectors.moment_detr.model import MomentDETR

__all__ = [
    "CLIP_LEN",
    "DEFAULT_LONG_VIDEO",
    "LONG_VIDEO_RULES",
    "MAX_CLIPS",
    "ClipGrid",
    "MomentDETRPrediction",
    "clip_grid",
    "postprocess",
    "run_moment_detr",
    "tef",
]

CLIP_LEN = 2.0  # seconds per clip (0.5 fps)
MAX_CLIPS = 75  # 150 s: the checkpoint's training range
LONG_VIDEO_RULES = ("refuse", "stride", "sliding")
DEFAULT_LONG_VIDEO = "refuse"  # library default; evaluation and ablation runs set one explicitly


def tef(num_clips: int) -> Tensor:
    """Temporal endpoint features ``(T, 2)``: ``[k / T, (k + 1) / T]``."""
    st = torch.arange(0, num_clips, 1.0) / num_clips
    return torch.stack([st, st + 1.0 / num_clips], dim=1)


@dataclass
class ClipGrid:
    """The 2-s clips of a segment: native frame per clip, effective clip length and segment geometry."""

    frame_indices: list[int]
    clip_len: float
    start_frame: int
    end_frame: int
    fps: float
    duration: float

    @property
    def num_clips(self) -> int:
        """Number of clips ``T``."""
        return len(self.frame_indices)


def clip_grid(start_frame: int, end_frame: int, fps: float, clip_len: float = CLIP_LEN) -> ClipGrid:
    """Clips of native frames ``[start_frame, end_frame)`` at ``1 / clip_len`` fps.

    ``T = ceil(duration / clip_len)``; clip ``k`` uses the last frame with time ``< (k + 0.5) * clip_len``
    (relative to the segment). For ``0 < duration < 2.1`` s the clip length becomes
    ``max(int(duration), 1) / 2`` (ffmpeg's ``fps = 2 / max(int(duration), 1)`` special case).
    """
    if fps <= 0:
        raise InputError(f"invalid frame rate {fps}")
    n = int(end_frame) - int(start_frame)
    if n <= 0:
        raise InputError(f"empty segment: frames [{start_frame}, {end_frame})")
    duration = n / fps
    step = clip_len
    if duration < 2.1:
        step = max(int(duration), 1) / 2.0
    num = max(1, math.ceil(duration / step - 1e-9))
    idx = []
    for k in range(num):
        rel = math.ceil((k + 0.5) * step * fps - 1e-9) - 1
        idx.append(int(start_frame) + min(max(rel, 0), n - 1))
    return ClipGrid(idx, step, int(start_frame), int(end_frame), float(fps), duration)


# ==========================================================================================================
# inference and post-processing


@dataclass
class MomentDETRPrediction:
    """Moment-DETR output for one query, in seconds relative to the segment start.

    ``windows``: ``[st, ed, score]`` sorted by score (4 decimals, not clamped); ``saliency``: one score per
    entry of ``clip_centres`` (seconds); ``raw``: raw model outputs per chunk (``pred_logits``,
    ``pred_spans``, ``saliency_scores``, offsets).
    """

    windows: list[list[float]]
    saliency: list[float]
    clip_centres: list[float]
    clip_ids: list[int]
    clip_len: float
    num_clips: int
    long_video: str
    applied: str
    raw: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def postprocess(
    outputs: dict[str, Tensor], span_duration: float, offset: float = 0.0, num_valid: int | None = None
) -> tuple[list[list[float]], list[float]]:
    """``run.py``-style post-processing of one sample (batch index 0).

    Windows ``[c - w/2, c + w/2] * span_duration + offset`` with score ``softmax(pred_logits)[..., 0]``
    (class 0 = foreground), all queries kept, sorted by score descending, every number rounded to 4 decimals,
    no clamping, no NMS. Saliency: scores of the first ``num_valid`` clips cast to fp16 (as ``run.py`` does),
    then rounded to 4 decimals (full-precision values stay in the raw record).
    """
    prob = F.softmax(outputs["pred_logits"][0].float(), dim=-1)[:, 0]
    spans = outputs["pred_spans"][0].float()
    st = (spans[:, 0] - spans[:, 1] / 2) * span_duration + offset
    ed = (spans[:, 0] + spans[:, 1] / 2) * span_duration + offset
    rows = [
        [float(a), float(b), float(s)]
        for a, b, s in zip(st.tolist(), ed.tolist(), prob.tolist(), strict=True)
    ]
    rows.sort(key=lambda r: r[2], reverse=True)
    windows = [[float(f"{x:.4f}") for x in r] for r in rows]
    sal = outputs["saliency_scores"][0].half().float()
    if num_valid is not None:
        sal = sal[:num_valid]
    return windows, [round(float(x), 4) for x in sal.tolist()]


@torch.no_grad()
def _forward(model: MomentDETR, vid: Tensor, query: Tensor) -> dict[str, Tensor]:
    param = next(model.parameters())
    dev, dtype = param.device, param.dtype
    t = vid.shape[0]
    src_vid = torch.cat([vid.float(), tef(t)], dim=1).unsqueeze(0).to(dev, dtype)
    src_txt = query.float().unsqueeze(0).to(dev, dtype)
    ones_t = torch.ones(1, t, device=dev, dtype=dtype)
    ones_q = torch.ones(1, query.shape[0], device=dev, dtype=dtype)
    out = model(src_txt, ones_q, src_vid, ones_t)
    return {k: out[k].detach().float().cpu() for k in ("pred_logits", "pred_spans", "saliency_scores")}


def _raw(out: dict[str, Tensor], **info: Any) -> dict[str, Any]:
    return {
        **info,
        **{
            k: [[round(float(x), 6) for x in row] for row in out[k][0].tolist()]
            for k in ("pred_logits", "pred_spans")
        },
        "saliency_scores": [round(float(x), 6) for x in out["saliency_scores"][0].tolist()],
    }


def _check_inputs(model: MomentDETR, video_feats: Tensor, query_feats: Tensor, long_video: str) -> None:
    if long_video not in LONG_VIDEO_RULES:
        raise InputError(
            f"unknown long_video rule {long_video!r}; choose one of: {', '.join(LONG_VIDEO_RULES)}"
        )
    if not model.opt.get("use_tef", True):
        raise InputError(
            "this Moment-DETR model was trained without TEF (ctx_mode without 'tef'); unsupported"
        )
    if video_feats.ndim != 2 or video_feats.shape[0] < 1:
        raise InputError(f"video features must be (T >= 1, D), got {tuple(video_feats.shape)}")
    if video_feats.shape[1] + 2 != model.vid_dim:
        raise InputError(
            f"video features are {video_feats.shape[1]}-d but the model expects {model.vid_dim - 2} + 2 (TEF)"
        )
    if query_feats.ndim != 2 or query_feats.shape[1] != model.txt_dim or query_feats.shape[0] < 1:
        raise InputError(f"query features must be (L >= 1, {model.txt_dim}), got {tuple(query_feats.shape)}")


def _run_sliding(
    model: MomentDETR, video_feats: Tensor, query_feats: Tensor, clip_len: float, max_clips: int
) -> MomentDETRPrediction:
    """Full windows of ``max_clips`` clips (stride ``max_clips``, the last one aligned to the end), merged."""
    t = int(video_feats.shape[0])
    starts = list(range(0, t - max_clips + 1, max_clips))
    if starts[-1] + max_clips < t:
        starts.append(t - max_clips)
    all_windows: list[list[float]] = []
    best: dict[int, float] = {}
    raw = []
    for s in starts:
        out = _forward(model, video_feats[s : s + max_clips], query_feats)
        windows, sal = postprocess(out, max_clips * clip_len, offset=s * clip_len, num_valid=max_clips)
        all_windows.extend(windows)
        for j, v in enumerate(sal):
            best[s + j] = max(best.get(s + j, -math.inf), v)
        raw.append(_raw(out, offset_s=s * clip_len, clip_ids=[s, s + max_clips]))
    all_windows.sort(key=lambda r: r[2], reverse=True)
    centres = [(c + 0.5) * clip_len for c in range(t)]
    ids = list(range(t))
    return MomentDETRPrediction(
        all_windows, [best[c] for c in ids], centres, ids, clip_len, t, "sliding", "sliding", raw
    )


def run_moment_detr(
    model: MomentDETR,
    video_feats: Tensor,
    query_feats: Tensor,
    clip_len: float = CLIP_LEN,
    long_video: str = DEFAULT_LONG_VIDEO,
    max_clips: int = MAX_CLIPS,
) -> MomentDETRPrediction:
    """Run Moment-DETR on normalised CLIP features with a long-video rule (``docs/selectors.md``).

    ``video_feats`` ``(T, D)`` (TEF not yet appended; it is computed per model call) and ``query_feats``
    ``(L, D_txt)`` are already L2-normalised. Windows are in seconds on the grid ``T * clip_len``.
    """
    _check_inputs(model, video_feats, query_feats, long_video)
    t = int(video_feats.shape[0])
    centres_all = [(c + 0.5) * clip_len for c in range(t)]
    if t <= max_clips:
        out = _forward(model, video_feats, query_feats)
        windows, sal = postprocess(out, t * clip_len, num_valid=t)
        raw = [_raw(out, offset_s=0.0, clip_ids=[0, t])]
        return MomentDETRPrediction(
            windows, sal, centres_all, list(range(t)), clip_len, t, long_video, "none", raw
        )
    if long_video == "refuse":
        raise InputError(
            f"segment has {t} clips of {clip_len:g} s ({t * clip_len:.0f} s) but the Moment-DETR checkpoint "
            f"supports at most {max_clips} ({max_clips * clip_len:.0f} s); set the long_video option "
            "(CLI --long-video) to 'stride' or 'sliding'"
        )
    if long_video == "stride":
        pick = [int(math.floor((i + 0.5) * t / max_clips)) for i in range(max_clips)]
        out = _forward(model, video_feats[pick], query_feats)
        windows, sal = postprocess(out, t * clip_len, num_valid=max_clips)
        raw = [_raw(out, offset_s=0.0, clip_ids=pick)]
        centres = [centres_all[p] for p in pick]
        return MomentDETRPrediction(windows, sal, centres, pick, clip_len, t, long_video, "stride", raw)
    return _run_sliding(model, video_feats, query_feats, clip_len, max_clips)
