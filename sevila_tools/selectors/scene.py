"""Scene-aware CLIP selector (``scene``): one question-relevant frame per visual segment.

Not part of the SeViLA paper or of ``selectors.md``; a toolkit baseline that spreads the ``k`` frames over the
different "shots" of the candidate pool instead of letting near-duplicate frames of one shot fill all ``k``
slots.

Rule (deterministic; all quantities from the same CLIP features as the ``clip`` selector):

1. Embed the candidates with CLIP (``pixels`` as in :class:`~sevila_tools.selectors.clip.CLIPSelector`) and
   the question text (``text_mode`` / ``long_text`` as there); relevance = cosine(frame, text).
2. Adjacent similarity ``s_i = cos(e_i, e_{i+1})`` for ``i = 0 .. n-2``. A **boundary** lies after candidate
   ``i`` when ``s_i < threshold``. ``threshold`` is a fixed value when given, otherwise adaptive:
   ``mean(s) - z * std(s)`` (``z = 1`` by default), and never above ``max_similarity`` (default 0.999, so a
   static video with identical frames is one segment). The boundaries cut the candidates into segments.
3. Each segment contributes its most relevant frame (ties -> earlier frame); segments are taken in order of
   that best relevance (ties -> earlier segment) until ``k`` frames are chosen. When there are fewer segments
   than ``k``, the remaining slots go to the most relevant unused candidates overall.
4. Frames are returned in temporal order; the record lists the segments, boundaries, threshold and adjacent
   similarities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from sevila_tools.errors import InputError
from sevila_tools.selectors.base import Selection, Selector, SelectorInput, register, selection_from_positions
from sevila_tools.selectors.clip import CLIPSelector, build_tiny_clip

__all__ = ["SceneSelector", "scene_segments", "select_per_segment"]


def scene_segments(
    embeds: torch.Tensor, threshold: float | None = None, z: float = 1.0, max_similarity: float = 0.999
) -> tuple[list[tuple[int, int]], list[float], float | None]:
    """Cut ``n`` frame embeddings into segments where adjacent cosine similarity drops.

    Returns ``(segments, adjacent_similarities, threshold_used)`` with segments as ``[start, end)`` position
    ranges covering ``0 .. n`` in order (``threshold_used`` is None for a single adaptive frame).
    """
    n = int(embeds.shape[0])
    if n == 0:
        raise InputError("no candidate frames")
    if n == 1:
        return [(0, 1)], [], None if threshold is None else float(threshold)
    e = F.normalize(embeds.float(), dim=-1)
    sims = (e[:-1] * e[1:]).sum(-1)
    if threshold is None:
        thr = float(sims.mean() - z * sims.std(unbiased=False))
        thr = min(thr, max_similarity)
    else:
        thr = float(threshold)
    cuts = [i + 1 for i, s in enumerate(sims.tolist()) if s < thr]
    bounds = [0, *cuts, n]
    return [(bounds[j], bounds[j + 1]) for j in range(len(bounds) - 1)], [float(s) for s in sims], thr


def select_per_segment(relevance: Sequence[float], segments: Sequence[tuple[int, int]], k: int) -> list[int]:
    """Best frame per segment (segments ranked by that score), then global fill; returns sorted positions."""
    if k > len(relevance):
        raise InputError(f"cannot select {k} keyframes from {len(relevance)} candidate frames")
    best = []
    for j, (a, b) in enumerate(segments):
        pos = max(range(a, b), key=lambda p: (relevance[p], -p))
        best.append((relevance[pos], -j, pos))
    best.sort(reverse=True)
    chosen = [pos for _, _, pos in best[:k]]
    if len(chosen) < k:
        rest = sorted((p for p in range(len(relevance)) if p not in chosen), key=lambda p: (-relevance[p], p))
        chosen += rest[: k - len(chosen)]
    return sorted(chosen)


@register
class SceneSelector(Selector):
    """One question-relevant frame per CLIP-similarity segment (module docstring).

    Args:
        model, tokenizer, text_mode, long_text, pixels, device, feature_cache: as for
            :class:`~sevila_tools.selectors.clip.CLIPSelector` (defaults ``openai/clip-vit-base-patch32``,
            ``question_options``, ``truncate``, ``native_crop``).
        threshold: fixed boundary threshold on adjacent cosine similarity (default None = adaptive).
        z: adaptive threshold ``mean - z * std`` (default 1.0).
        max_similarity: upper bound of the adaptive threshold (default 0.999).
    """

    name = "scene"
    description = "CLIP: cut the candidates where adjacent-frame similarity drops, best frame per segment."

    @classmethod
    def from_runtime(cls, runtime: Any = None, **options: Any) -> SceneSelector:
        """Build for a SeViLA runtime (tiny random CLIP with ``tiny-random`` runtimes, see CLIPSelector)."""
        if runtime is not None:
            options.setdefault("device", runtime.device)
            if runtime.random_weights and options.get("model") is None:
                model, tok, _ = build_tiny_clip()
                options.update(model=model, tokenizer=tok)
        return cls(**options)

    def __init__(
        self,
        model: Any | str | None = None,
        tokenizer: Any | None = None,
        *,
        text_mode: str = "question_options",
        long_text: str = "truncate",
        pixels: str = "native_crop",
        threshold: float | None = None,
        z: float = 1.0,
        max_similarity: float = 0.999,
        device: str | torch.device = "cpu",
        feature_cache: dict | None = None,
    ) -> None:
        self.clip = CLIPSelector(
            model,
            tokenizer,
            text_mode=text_mode,
            long_text=long_text,
            pixels=pixels,
            device=device,
            feature_cache=feature_cache,
        )
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise InputError(f"scene threshold must be a cosine similarity in [-1, 1] (got {threshold})")
        self.threshold = threshold
        self.z = float(z)
        self.max_similarity = float(max_similarity)

    def config(self) -> dict[str, Any]:
        """Selector configuration recorded with every selection."""
        return {
            **self.clip.config(),
            "threshold": self.threshold,
            "z": self.z,
            "max_similarity": self.max_similarity,
        }

    def select_with_embeddings(self, inp: SelectorInput, k: int, image_embeds: torch.Tensor) -> Selection:
        """:meth:`select` with precomputed candidate embeddings."""
        if k < 1:
            raise InputError(f"k must be >= 1 (got {k})")
        relevance, info = self.clip.score(image_embeds, inp.question, inp.options)
        segments, sims, thr = scene_segments(image_embeds, self.threshold, self.z, self.max_similarity)
        positions = select_per_segment(relevance, segments, k)
        extra = {
            **info,
            "pixels": self.clip.pixels,
            "segments": [list(s) for s in segments],
            "num_segments": len(segments),
            "boundaries": [a for a, _ in segments[1:]],
            "threshold_used": thr,
            "adjacent_similarity": sims,
        }
        return selection_from_positions(
            self.name, inp, positions, relevance, config=self.config(), extra=extra
        )

    def select(self, inp: SelectorInput, k: int) -> Selection:
        """``k`` frames spread over visual segments, sorted by time."""
        if k > len(inp.candidates.indices):
            raise InputError(
                f"cannot select {k} keyframes from {len(inp.candidates.indices)} candidate frames"
            )
        return self.select_with_embeddings(inp, k, self.clip.frame_embeddings(inp))
