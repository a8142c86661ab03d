"""The ``moment_detr`` keyframe selector: CLIP features of the segment's 2-s clips -> Moment-DETR -> frames.

Pipeline, long-video rules, frame strategies and options: ``docs/selectors.md``.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from sevila_tools.errors import CheckpointError, InputError
from sevila_tools.selectors.base import (
    Selection,
    Selector,
    SelectorInput,
    check_choice,
    check_keyframes,
    register,
)
from sevila_tools.selectors.clip import clip_fingerprint, clip_for_runtime, runtime_device
from sevila_tools.selectors.clip_models import (
    LazyCLIP,
    clip_pixel_values,
    shared_clip,
)
from sevila_tools.selectors.memo import (
    feature_memo,
    file_identity,
    lookup_or_compute,
    model_token,
    path_fingerprint,
    shared_model,
)
from sevila_tools.selectors.moment_detr import checks
from sevila_tools.selectors.moment_detr.checkpoint import shared_moment_detr
from sevila_tools.selectors.moment_detr.clip_grid import (
    DEFAULT_LONG_VIDEO,
    LONG_VIDEO_RULES,
    ClipGrid,
    MomentDETRPrediction,
    clip_grid,
    run_moment_detr,
)
from sevila_tools.selectors.moment_detr.frames import (
    FRAME_STRATEGIES,
    frames_top_window_uniform,
    frames_topk_saliency,
    snap_to_candidates,
)
from sevila_tools.selectors.moment_detr.model import MomentDETR, build_tiny_moment_detr, options_dict

__all__ = ["MAX_QUERY_TOKENS", "TEXT_MODES", "MomentDETROptions", "MomentDETRSelector"]

MAX_QUERY_TOKENS = 32  # SOT + 30 BPE tokens + EOT
TEXT_MODES = ("question_only", "question_options")
TINY_MDETR_NAME = "tiny-random-moment-detr"


class MomentDETROptions(BaseModel):
    """Options of the ``moment_detr`` selector (keys of the shared selector option namespace)."""

    model_config = ConfigDict(extra="forbid")

    mdetr_checkpoint: str | None = Field(
        default=None,
        description="Moment-DETR checkpoint (.ckpt or .safetensors); required unless the runtime has "
        "random weights (then a tiny random Moment-DETR is used).",
        json_schema_extra={"cli": {"flags": ["--mdetr-checkpoint"], "metavar": "FILE"}},
    )
    trust_checkpoint: bool = Field(
        default=False, description="Allow pickled objects in the checkpoint (weights_only=False)."
    )
    clip_model: str | None = Field(
        default=None,
        description="CLIP hub id or folder for the features (default openai/clip-vit-base-patch32).",
        json_schema_extra={"cli": {"flags": ["--clip-model"], "metavar": "ID"}},
    )
    text_mode: Literal["question_only", "question_options"] = Field(
        default="question_only", description="Query text: the question alone or question + options."
    )
    long_video: Literal["refuse", "stride", "sliding"] = Field(
        default="refuse", description="Rule for segments longer than 75 clips (150 s).",
        json_schema_extra={"cli": {"flags": ["--long-video"], "default": "sliding"}},  # what commands use
    )
    frame_strategy: Literal["top_window_uniform", "topk_saliency"] = Field(
        default="top_window_uniform", description="How frames are taken from the model's outputs."
    )
    snap_to_candidates: bool = Field(
        default=False, description="Move each frame to the nearest unused SeViLA candidate."
    )


def _shared_tiny_moment_detr(clip: Any, device: torch.device) -> MomentDETR:
    """The seeded tiny random Moment-DETR sized for ``clip``, built once per CLIP object and device."""
    proj, hidden = int(clip.config.projection_dim), int(clip.config.text_config.hidden_size)
    key = ("moment_detr", TINY_MDETR_NAME, model_token(clip), proj, hidden, str(device))
    return shared_model(key, lambda: build_tiny_moment_detr(proj, hidden).to(device).eval())


@register
class MomentDETRSelector(Selector):
    """Keyframes from Moment-DETR's best window or highest-saliency clips (``docs/selectors.md``).

    Args:
        checkpoint: Moment-DETR checkpoint path (``.ckpt`` or ``.safetensors``; required unless ``model``),
            loaded on first use, once per process for the same file, options, device and trust setting.
        model: an already-built :class:`MomentDETR` (tests, reuse).
        opt: architecture options overriding those stored with the checkpoint.
        clip_model: a ``CLIPModel`` or a model id / folder (default ``openai/clip-vit-base-patch32``, lazy,
            shared by every selector of the process).
        clip_tokenizer: tokenizer for ``clip_model`` (required when ``clip_model`` is an object).
        text_mode: ``question_only`` (default) | ``question_options`` (truncated at 32 tokens).
        frame_strategy: ``top_window_uniform`` (default) | ``topk_saliency``.
        long_video: ``refuse`` (default) | ``stride`` | ``sliding``.
        snap_to_candidates: snap frames to the nearest unused SeViLA candidates (default False).
        trusted: allow ``weights_only=False`` for pickled checkpoints (the official one needs it).
        device: torch device for both models.
        clip_batch_size: frames per CLIP image-encoder batch.
        feature_cache: optional dict used instead of the process-wide feature memo.
        clip_name, model_name: labels of model objects in records and fingerprints.
    """

    name: ClassVar[str] = "moment_detr"
    description: ClassVar[str] = (
        "Frames from the best Moment-DETR moment window (or top saliency clips), CLIP-only checkpoint."
    )
    Options: ClassVar[type[BaseModel]] = MomentDETROptions
    scores_candidates: ClassVar[bool] = False
    rank: ClassVar[int] = 40

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        model: MomentDETR | None = None,
        opt: Any = None,
        clip_model: Any | str | None = None,
        clip_tokenizer: Any | None = None,
        text_mode: str = "question_only",
        frame_strategy: str = "top_window_uniform",
        long_video: str = DEFAULT_LONG_VIDEO,
        snap_to_candidates: bool = False,
        trusted: bool = False,
        device: str | torch.device = "cpu",
        clip_batch_size: int = 60,
        feature_cache: dict | None = None,
        clip_name: str | None = None,
        model_name: str | None = None,
    ) -> None:
        self.text_mode = check_choice(text_mode, TEXT_MODES, "moment_detr text_mode")
        self.frame_strategy = check_choice(frame_strategy, FRAME_STRATEGIES, "moment_detr frame_strategy")
        self.long_video = check_choice(long_video, LONG_VIDEO_RULES, "moment_detr long_video rule")
        self.snap = bool(snap_to_candidates)
        self.trusted = bool(trusted)
        self.device = torch.device(device)
        self.clip_batch_size = int(clip_batch_size)
        self.feature_cache = feature_cache
        self._opt = opt
        self.model_name = model_name
        self.checkpoint: str | None = None if checkpoint is None else str(checkpoint)
        self._model: MomentDETR | None = None
        if model is not None:
            self._model = model.to(self.device).eval()
        elif checkpoint is None:
            raise InputError(
                "the moment_detr selector needs a checkpoint path (option mdetr_checkpoint, CLI "
                "--mdetr-checkpoint); nothing is downloaded"
            )
        elif not Path(checkpoint).is_file():
            raise CheckpointError(f"Moment-DETR checkpoint not found: {checkpoint}")
        self._clip = LazyCLIP(clip_model, clip_tokenizer, self.device, clip_name, "MomentDETRSelector")

    @classmethod
    def create(cls, runtime: Any, options: MomentDETROptions) -> MomentDETRSelector:  # type: ignore[override]
        """Build from :class:`MomentDETROptions`. Without ``mdetr_checkpoint`` only random-weight runtimes
        work: they get a tiny random Moment-DETR (real key names) over the tiny random CLIP, offline."""
        device = runtime_device(runtime)
        common: dict[str, Any] = {
            "text_mode": options.text_mode,
            "frame_strategy": options.frame_strategy,
            "long_video": options.long_video,
            "snap_to_candidates": options.snap_to_candidates,
            "trusted": options.trust_checkpoint,
            "device": device,
        }
        if options.mdetr_checkpoint is not None:
            return cls(options.mdetr_checkpoint, clip_model=options.clip_model, **common)
        if not bool(getattr(runtime, "random_weights", False)):
            raise InputError(
                "the moment_detr selector needs a checkpoint: pass --mdetr-checkpoint PATH (option "
                "mdetr_checkpoint; the official run_on_video/moment_detr_ckpt/model_best.ckpt)"
            )
        clip, tok, label = clip_for_runtime(runtime, options.clip_model)
        if tok is None:  # an explicit CLIP: the tiny Moment-DETR is sized for it
            clip, tok = shared_clip(clip, device)
            label = options.clip_model
        model = _shared_tiny_moment_detr(clip, device)
        return cls(
            model=model,
            clip_model=clip,
            clip_tokenizer=tok,
            clip_name=label,
            model_name=TINY_MDETR_NAME,
            **common,
        )

    # -- lazy models --------------------------------------------------------------------------------------
    @property
    def model(self) -> MomentDETR:
        """The Moment-DETR model (loaded from ``checkpoint`` on first use, shared within the process)."""
        if self._model is None:
            assert self.checkpoint is not None
            self._model = shared_moment_detr(self.checkpoint, self.trusted, self._opt, self.device)
        return self._model

    @property
    def clip(self) -> Any:
        """The CLIP model used for features (loaded on first use when an id was given)."""
        return self._clip.model

    @classmethod
    def unavailable_reason(cls, options: dict[str, Any], random_weights: bool) -> str | None:
        return checks.unavailable_reason(options, random_weights)

    @classmethod
    def check_videos(
        cls, segments: list[tuple[str, float | None, float | None]], options: dict[str, Any], decoder: str
    ) -> dict[str, Any] | None:
        return checks.long_video_report(segments, options, decoder)

    def config(self) -> dict[str, Any]:
        """Selector configuration recorded with every selection."""
        return {
            "checkpoint": self.checkpoint,
            "clip_model": self._clip.name,
            "text_mode": self.text_mode,
            "frame_strategy": self.frame_strategy,
            "long_video": self.long_video,
            "snap_to_candidates": self.snap,
        }

    def fingerprint(self) -> dict[str, Any]:
        """What changes the output: checkpoint file (path, size, mtime) and options, CLIP identity, modes."""
        if self.checkpoint is not None:
            weights: Any = path_fingerprint(self.checkpoint)
        else:
            weights = self.model_name or f"model object {type(self._model).__name__}"
        opt = None if self._opt is None else json.loads(json.dumps(options_dict(self._opt), default=str))
        return {
            "selector": self.name,
            **self.config(),
            "checkpoint": weights,
            "opt": opt,
            "clip_model": clip_fingerprint(self._clip.name),
        }

    # -- features -----------------------------------------------------------------------------------------
    def image_features(self, frames: np.ndarray) -> Tensor:
        """Native-resolution uint8 frames ``(T, H, W, 3)`` -> normalised projected CLIP embeddings."""
        size, step = self._clip.image_size, self.clip_batch_size
        batches = (clip_pixel_values(frames[i : i + step], size=size, std_eps=1e-8) for i in range(0, len(frames), step))
        return self._clip.image_embeddings(batches, eps=1e-5)

    def segment_grid(self, inp: SelectorInput) -> ClipGrid:
        """The 2-s clip grid of the segment (the candidates' ``[edges[0], edges[-1])`` native frames)."""
        cand = inp.candidates
        fps = float(cand.fps)
        nvf = int(cand.num_video_frames)
        if len(cand.edges) > 0:
            start, end = int(cand.edges[0]), int(cand.edges[-1])
        else:
            start = 0 if inp.start is None else int(inp.start * fps)
            end = nvf if inp.end is None else int(inp.end * fps)
        start = min(max(start, 0), nvf - 1)
        end = min(end, nvf)
        if end <= start:  # window shorter than one frame: that one frame, as SeViLA's sampler does
            end = start + 1
        return clip_grid(start, end, fps)

    def feature_key(self, inp: SelectorInput, grid: ClipGrid) -> Hashable:
        """Key of the clip features: CLIP identity, pixel rule, video file identity, decoder, clip frames."""
        return (
            "moment_detr",
            model_token(self.clip),
            "native_crop_std_eps_1e-8",
            file_identity(inp.video),
            str(inp.candidates.decoder),
            tuple(int(i) for i in grid.frame_indices),
        )

    def video_features(self, inp: SelectorInput) -> tuple[Tensor, ClipGrid]:
        """Normalised CLIP features ``(T, D)`` of the segment's clips (TEF not appended) and the clip grid;
        computed once per process (or per ``feature_cache``) for the same CLIP, video and clip grid."""
        grid = self.segment_grid(inp)

        def compute() -> Tensor:
            from sevila_tools.video import read_frames

            frames, _ = read_frames(inp.video, grid.frame_indices, decoder=inp.candidates.decoder, size=None)
            return self.image_features(frames)

        store = feature_memo() if self.feature_cache is None else self.feature_cache
        return lookup_or_compute(store, self.feature_key(inp, grid), compute), grid

    def query_text(self, question: str, options: Sequence[str] = ()) -> str:
        """The text sent to Moment-DETR for ``text_mode``."""
        if self.text_mode == "question_options" and options:
            return " ".join([question, *options])
        return question

    @torch.no_grad()
    def query_features(self, text: str) -> tuple[Tensor, dict[str, Any]]:
        """CLIP text token states for Moment-DETR: <= 32 tokens (BOS/EOS kept), final-LayerNorm output (not
        projected), sliced to the valid length, L2-normalised per token.

        Returns ``(L, D_txt)`` and a record.
        """
        if not text or not text.strip():
            raise InputError("the question is empty")
        tok = self._clip.tokenizer
        n_full = len(tok(text, truncation=False, verbose=False).input_ids)
        enc = tok([text], truncation=True, max_length=MAX_QUERY_TOKENS, return_tensors="pt")
        n_valid = int(enc["attention_mask"][0].sum())
        clip = self.clip
        text_model = getattr(clip, "text_model", clip)
        hidden = text_model(
            input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
        ).last_hidden_state
        feats = F.normalize(hidden[0, :n_valid].float().cpu(), dim=-1, eps=1e-5)
        return feats, {
            "query": text,
            "query_tokens": n_valid,
            "query_tokens_full": n_full,
            "query_truncated": n_full > MAX_QUERY_TOKENS,
        }

    # -- selection ----------------------------------------------------------------------------------------
    def predict(self, inp: SelectorInput) -> tuple[MomentDETRPrediction, ClipGrid, dict[str, Any]]:
        """Run the full pipeline on ``inp``: (prediction, clip grid, query record)."""
        feats, grid = self.video_features(inp)
        qfeats, qinfo = self.query_features(self.query_text(inp.question, inp.options))
        model = self.model
        if qfeats.shape[1] != model.txt_dim:
            raise CheckpointError(
                f"Moment-DETR expects {model.txt_dim}-d text token states but the CLIP text tower "
                f"gives {qfeats.shape[1]}-d"
            )
        if feats.shape[1] + 2 != model.vid_dim:
            raise CheckpointError(
                f"Moment-DETR expects {model.vid_dim - 2}-d CLIP image embeddings (+2 TEF) but "
                f"CLIP gives {feats.shape[1]}-d"
            )
        pred = run_moment_detr(model, feats, qfeats, clip_len=grid.clip_len, long_video=self.long_video)
        return pred, grid, qinfo

    def select(self, inp: SelectorInput, k: int) -> Selection:
        """``k`` frames (sorted by time) by the configured frame strategy; the record keeps raw outputs."""
        check_keyframes(k)
        pred, grid, qinfo = self.predict(inp)
        return self.selection_from_prediction(inp, k, pred, grid, qinfo)

    def strategy_frames(
        self, k: int, pred: MomentDETRPrediction, grid: ClipGrid
    ) -> tuple[list[int], list[float | None], dict[str, Any]]:
        """Frames (sorted by time), their scores and a record for the configured frame strategy."""
        if self.frame_strategy == "top_window_uniform":
            frames, info = frames_top_window_uniform(
                pred.windows, k, grid.fps, grid.start_frame, grid.end_frame, grid.duration
            )
            w = info["window"]
            return frames, [None if w is None else float(w[2])] * k, info
        frames, sal, info = frames_topk_saliency(
            pred.saliency,
            pred.clip_centres,
            k,
            grid.fps,
            grid.start_frame,
            grid.end_frame,
            grid.duration,
            clip_len=grid.clip_len,
        )
        return frames, list(sal), info

    def selection_from_prediction(
        self,
        inp: SelectorInput,
        k: int,
        pred: MomentDETRPrediction,
        grid: ClipGrid,
        qinfo: dict[str, Any] | None = None,
    ) -> Selection:
        """Turn a prediction into a :class:`Selection` (strategy, snapping, record)."""
        cand = inp.candidates
        frames, scores, info = self.strategy_frames(k, pred, grid)
        cand_idx = [int(i) for i in cand.indices]
        positions: list[int | None]
        if self.snap:
            info["unsnapped_frames"] = list(frames)
            frames, snapped, source = snap_to_candidates(frames, cand_idx)
            positions = [int(p) for p in snapped]
            scores = [scores[i] for i in source]
        else:
            positions = [cand_idx.index(f) if f in cand_idx else None for f in frames]
        extra = {
            "frame_strategy": self.frame_strategy,
            **info,
            "snap_to_candidates": self.snap,
            "long_video": self.long_video,
            "long_video_applied": pred.applied,
            "num_clips": pred.num_clips,
            "clip_len": pred.clip_len,
            "clip_frame_indices": grid.frame_indices,
            "segment_frames": [grid.start_frame, grid.end_frame],
            "duration": grid.duration,
            "text_mode": self.text_mode,
            **(qinfo or {}),
            "pred_relevant_windows": pred.windows,
            "pred_saliency_scores": pred.saliency,
            "saliency_clip_ids": pred.clip_ids,
            "raw": pred.raw,
        }
        return Selection(
            selector=self.name,
            config=self.config(),
            candidate_frame_indices=cand_idx,
            candidate_times=[float(t) for t in cand.timestamps],
            candidate_scores=None,
            frame_indices=[int(f) for f in frames],
            times=[float(f) / grid.fps for f in frames],
            candidate_positions=positions,
            scores=scores,
            extra=extra,
        )
