"""Scene-aware CLIP selector (``scene``): one question-relevant frame per visual segment of the candidates.

A toolkit baseline, not part of the SeViLA paper; the rule and its options are in ``docs/selectors.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from sevila_tools.errors import InputError
from sevila_tools.selectors.base import (
    Selection,
    Selector,
    SelectorInput,
    check_keyframes,
    register,
    selection_from_positions,
)
from sevila_tools.selectors.clip import CLIPOptions, CLIPSelector

__all__ = ["SceneOptions", "SceneSelector", "scene_segments", "select_per_segment"]


class SceneOptions(CLIPOptions):
    """Options of the ``scene`` selector: the ``clip`` options plus the segmentation rule."""

    scene_threshold: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Fixed boundary threshold on adjacent-frame cosine similarity (None = adaptive).",
    )
    scene_z: float = Field(default=1.0, description="Adaptive threshold = mean - scene_z * std.")
    scene_max_similarity: float = Field(
        default=0.999, description="Upper bound of the adaptive threshold (static video = one segment)."
    )


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
    check_keyframes(k, len(relevance))
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
    """One question-relevant frame per CLIP-similarity segment (``docs/selectors.md``).

    Args:
        model, tokenizer and the keyword arguments not listed here (``text_mode``, ``long_text``, ``pixels``,
            ``device``, ``batch_size``, ``feature_cache``, ``model_name``): as for
            :class:`~sevila_tools.selectors.clip.CLIPSelector`.
        threshold: fixed boundary threshold on adjacent cosine similarity (default None = adaptive).
        z: adaptive threshold ``mean - z * std`` (default 1.0).
        max_similarity: upper bound of the adaptive threshold (default 0.999).
    """

    name: ClassVar[str] = "scene"
    description: ClassVar[str] = (
        "CLIP: cut the candidates where adjacent-frame similarity drops, best frame per segment."
    )
    Options: ClassVar[type[BaseModel]] = SceneOptions
    scores_candidates: ClassVar[bool] = True
    rank: ClassVar[int] = 30

    def __init__(
        self,
        model: Any | str | None = None,
        tokenizer: Any | None = None,
        *,
        threshold: float | None = None,
        z: float = 1.0,
        max_similarity: float = 0.999,
        **clip: Any,
    ) -> None:
        self.clip = CLIPSelector(model, tokenizer, **clip)
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise InputError(f"scene threshold must be a cosine similarity in [-1, 1] (got {threshold})")
        self.threshold = threshold
        self.z = float(z)
        self.max_similarity = float(max_similarity)

    @classmethod
    def create(cls, runtime: Any, options: SceneOptions) -> SceneSelector:  # type: ignore[override]
        """Build from :class:`SceneOptions` (tiny random CLIP with random-weight runtimes, as ``clip``)."""
        return cls(
            **CLIPSelector.clip_arguments(runtime, options),
            threshold=options.scene_threshold,
            z=options.scene_z,
            max_similarity=options.scene_max_similarity,
        )

    def config(self) -> dict[str, Any]:
        """Selector configuration recorded with every selection."""
        return {
            **self.clip.config(),
            "threshold": self.threshold,
            "z": self.z,
            "max_similarity": self.max_similarity,
        }

    def fingerprint(self) -> dict[str, Any]:
        """The CLIP fingerprint (model identity, modes) plus the segmentation parameters."""
        return {
            **self.clip.fingerprint(),
            "selector": self.name,
            "threshold": self.threshold,
            "z": self.z,
            "max_similarity": self.max_similarity,
        }

    def select_with_embeddings(self, inp: SelectorInput, k: int, image_embeds: torch.Tensor) -> Selection:
        """:meth:`select` with precomputed candidate embeddings."""
        check_keyframes(k)
        relevance, info = self.clip.score(image_embeds, inp.question, inp.options, self.clip.prompt_text(inp))
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
        check_keyframes(k, len(inp.candidates.indices))
        return self.select_with_embeddings(inp, k, self.clip.frame_embeddings(inp))
