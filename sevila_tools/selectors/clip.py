"""CLIP similarity keyframe selector (``clip``): top-k candidates by image-text cosine similarity.

Text modes, the long-text rule, pixel modes and options: ``docs/selectors.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from sevila_tools.errors import InputError
from sevila_tools.selectors.base import (
    Selection,
    Selector,
    SelectorInput,
    check_choice,
    check_keyframes,
    register,
    selection_from_positions,
    topk_sorted,
)
from sevila_tools.selectors.clip_models import (
    CLIP_CONTEXT_LENGTH,
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_CLIP_MODEL,
    TINY_CLIP_NAME,
    LazyCLIP,
    build_tiny_clip,
    clip_pixel_values,
    clip_tokenizer_from_bpe,
    embedding_tensor,
    load_clip,
    resize_short_center_crop,
    shared_clip,
)
from sevila_tools.selectors.memo import (
    feature_memo,
    file_identity,
    lookup_or_compute,
    model_token,
    path_fingerprint,
)

logger = logging.getLogger(__name__)

TEXT_MODES = ("question_options", "sevila_prompt", "question_only")
LONG_TEXT_MODES = ("truncate", "per_option_mean")
PIXEL_MODES = ("native_crop", "sevila_224")

__all__ = [
    "CLIPOptions",
    "CLIPSelector",
    "CLIP_CONTEXT_LENGTH",
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_CLIP_MODEL",
    "LONG_TEXT_MODES",
    "PIXEL_MODES",
    "TEXT_MODES",
    "build_text",
    "build_tiny_clip",
    "clip_fingerprint",
    "clip_for_runtime",
    "clip_pixel_values",
    "clip_tokenizer_from_bpe",
    "embedding_tensor",
    "load_clip",
    "resize_short_center_crop",
    "runtime_device",
]


class CLIPOptions(BaseModel):
    """Options of the ``clip`` selector (keys of the shared selector option namespace)."""

    model_config = ConfigDict(extra="forbid")

    clip_model: str | None = Field(
        default=None,
        description="CLIP hub id or from_pretrained folder (default openai/clip-vit-base-patch32; "
        "tiny random CLIP with random-weight runtimes).",
        json_schema_extra={"cli": {"flags": ["--clip-model"], "metavar": "ID"}},
    )
    text_mode: Literal["question_options", "sevila_prompt", "question_only"] = Field(
        default="question_options", description="Which text is compared with the frames."
    )
    long_text: Literal["truncate", "per_option_mean"] = Field(
        default="truncate", description="What to do with a text longer than CLIP's 77 tokens."
    )
    pixels: Literal["native_crop", "sevila_224"] = Field(
        default="native_crop", description="Which pixels CLIP sees."
    )


def runtime_device(runtime: Any) -> torch.device:
    """The runtime's device (CPU without a runtime)."""
    return torch.device(getattr(runtime, "device", None) or "cpu")


def clip_for_runtime(runtime: Any, clip_model: str | None) -> tuple[Any, Any, str | None]:
    """``(model or id, tokenizer or None, label)`` for a selector built from options.

    Random-weight runtimes without ``clip_model`` get the process-wide tiny random CLIP (offline); otherwise
    the id/folder is returned as is and loaded lazily (and once per process) on first use.
    """
    if clip_model is None and bool(getattr(runtime, "random_weights", False)):
        model, tok = shared_clip(TINY_CLIP_NAME, runtime_device(runtime))
        return model, tok, TINY_CLIP_NAME
    return clip_model or DEFAULT_CLIP_MODEL, None, None


def clip_fingerprint(name: str) -> Any:
    """Identity of a CLIP model name: a local folder's files (size, mtime), else the id itself."""
    return path_fingerprint(name) if Path(name).expanduser().exists() else name


def build_text(question: str, options: Sequence[str], text_mode: str) -> str:
    """The CLIP text for one question in ``text_mode`` (``docs/selectors.md``)."""
    if text_mode == "question_options":
        return " ".join([question, *options])
    if text_mode == "sevila_prompt":
        from sevila_tools.prompts import answerer_prompt

        return answerer_prompt(question, list(options))
    if text_mode == "question_only":
        return question
    raise InputError(f"unknown CLIP text_mode {text_mode!r}; choose one of: {', '.join(TEXT_MODES)}")


def _per_option_texts(question: str, options: Sequence[str], text_mode: str) -> list[str]:
    if text_mode == "sevila_prompt":
        from sevila_tools.prompts import LETTERS, QA_INSTRUCTION

        return [
            f"Question: {question} Option {LETTERS[i]}: {o} {QA_INSTRUCTION}" for i, o in enumerate(options)
        ]
    return [f"{question} {o}" for o in options]


@register
class CLIPSelector(Selector):
    """Rank candidates by CLIP image-text cosine similarity (``docs/selectors.md``).

    Args:
        model: a ``CLIPModel``, or a model id / local folder loaded lazily, once per process and device
            (default ``openai/clip-vit-base-patch32``).
        tokenizer: the tokenizer matching ``model``; required when ``model`` is an object.
        text_mode: ``question_options`` (default) | ``sevila_prompt`` | ``question_only``.
        long_text: ``truncate`` (default) | ``per_option_mean`` (only used when the text exceeds 77 tokens).
        pixels: ``native_crop`` (default) | ``sevila_224``.
        device: torch device for the model.
        batch_size: frames per image-encoder batch.
        feature_cache: optional dict used instead of the process-wide feature memo.
        model_name: label of a model object in records (default: its ``_name_or_path``).
    """

    name: ClassVar[str] = "clip"
    description: ClassVar[str] = (
        "Top-k candidates by CLIP cosine similarity between each frame and the question text."
    )
    Options: ClassVar[type[BaseModel]] = CLIPOptions
    scores_candidates: ClassVar[bool] = True
    rank: ClassVar[int] = 20

    def __init__(
        self,
        model: Any | str | None = None,
        tokenizer: Any | None = None,
        *,
        text_mode: str = "question_options",
        long_text: str = "truncate",
        pixels: str = "native_crop",
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        feature_cache: dict | None = None,
        model_name: str | None = None,
    ) -> None:
        self.text_mode = check_choice(text_mode, TEXT_MODES, "CLIP text_mode")
        self.long_text = check_choice(long_text, LONG_TEXT_MODES, "CLIP long_text mode")
        self.pixels = check_choice(pixels, PIXEL_MODES, "CLIP pixels mode")
        if batch_size < 1:
            raise InputError("batch_size must be >= 1")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.feature_cache = feature_cache
        self._clip = LazyCLIP(model, tokenizer, self.device, model_name, "CLIPSelector")
        self.truncated_texts = 0  # texts cut at CLIP's token limit so far (the warning is shown for the first)

    @staticmethod
    def clip_arguments(runtime: Any, options: CLIPOptions) -> dict[str, Any]:
        """Constructor arguments from the CLIP options (shared by selectors built on this one)."""
        model, tok, label = clip_for_runtime(runtime, options.clip_model)
        return {"model": model, "tokenizer": tok, "text_mode": options.text_mode, "long_text": options.long_text,
                "pixels": options.pixels, "device": runtime_device(runtime), "model_name": label}

    @classmethod
    def create(cls, runtime: Any, options: CLIPOptions) -> CLIPSelector:  # type: ignore[override]
        """Build from :class:`CLIPOptions` on the runtime's device (tiny random CLIP for random runtimes)."""
        return cls(**cls.clip_arguments(runtime, options))

    # -- model access -------------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """The CLIP model's label in records and fingerprints."""
        return self._clip.name

    @property
    def model(self) -> Any:
        """The CLIP model (loaded on first use when an id was given, shared by every selector in the process)."""
        return self._clip.model

    @property
    def tokenizer(self) -> Any:
        """The CLIP tokenizer (loaded with the model when an id was given)."""
        return self._clip.tokenizer

    @property
    def max_length(self) -> int:
        """Text context length: the text tower's ``max_position_embeddings`` (77 for CLIP)."""
        cfg = getattr(self.model.config, "text_config", None)
        return int(getattr(cfg, "max_position_embeddings", CLIP_CONTEXT_LENGTH) or CLIP_CONTEXT_LENGTH)

    def config(self) -> dict[str, Any]:
        """Selector configuration recorded with every selection."""
        return {
            "model": self.model_name,
            "text_mode": self.text_mode,
            "long_text": self.long_text,
            "pixels": self.pixels,
        }

    def fingerprint(self) -> dict[str, Any]:
        """What changes the output: CLIP identity (a local folder's file sizes/mtimes) and the three modes."""
        return {"selector": self.name, **self.config(), "model": clip_fingerprint(self.model_name)}

    # -- images -------------------------------------------------------------------------------------------
    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised projected image embeddings ``(n, d)`` (float32, CPU) for CLIP ``pixel_values``."""
        return self._clip.image_embeddings(pixel_values.split(self.batch_size))

    def candidate_pixels(self, inp: SelectorInput) -> torch.Tensor:
        """CLIP ``pixel_values`` of the candidates for the configured ``pixels`` mode."""
        cand = inp.candidates
        if self.pixels == "sevila_224":
            from sevila_tools.video import preprocess

            return preprocess(cand.frames).float()
        from sevila_tools.video import read_frames

        frames, _ = read_frames(inp.video, [int(i) for i in cand.indices], decoder=cand.decoder, size=None)
        return clip_pixel_values(frames, size=self._clip.image_size)

    def feature_key(self, inp: SelectorInput) -> Hashable:
        """Key of the candidates' embeddings: model identity, pixel mode, video file identity, decoder and
        candidate frame indices."""
        cand = inp.candidates
        return (
            "clip",
            model_token(self.model),
            self.pixels,
            file_identity(inp.video),
            str(cand.decoder),
            tuple(int(i) for i in cand.indices),
        )

    def frame_embeddings(self, inp: SelectorInput) -> torch.Tensor:
        """Normalised image embeddings ``(n_candidates, d)`` of the candidates, computed once per process
        (or per ``feature_cache``) for the same model, pixels, video and frames."""
        store = feature_memo() if self.feature_cache is None else self.feature_cache
        return lookup_or_compute(
            store, self.feature_key(inp), lambda: self.image_embeddings(self.candidate_pixels(inp))
        )

    # -- texts --------------------------------------------------------------------------------------------
    def _token_count(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False, verbose=False).input_ids)

    @torch.no_grad()
    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        out = self.model.get_text_features(
            input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
        )
        return F.normalize(embedding_tensor(out).float().cpu(), dim=-1)

    def prompt_text(self, inp: SelectorInput) -> str | None:
        """The pipeline's Answerer text when ``text_mode`` is ``sevila_prompt`` (None = default template)."""
        return inp.qa_text if self.text_mode == "sevila_prompt" else None

    def text_embedding(
        self, question: str, options: Sequence[str] = (), prompt: str | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Normalised text embedding ``(d,)`` for ``question``/``options`` and a record of how it was made.

        ``prompt`` replaces the built text (the run's Answerer text in ``sevila_prompt`` mode). The record
        holds ``text_mode``, ``long_text``, ``long_text_used`` (``none`` when the text fits, otherwise
        ``truncate`` or ``per_option_mean``), ``texts``, ``token_counts`` and ``truncated``.
        """
        if not question or not question.strip():
            raise InputError("the question is empty")
        text = prompt or build_text(question, options, self.text_mode)
        limit = self.max_length
        n_tokens = self._token_count(text)
        info: dict[str, Any] = {
            "text_mode": self.text_mode,
            "long_text": self.long_text,
            "max_length": limit,
            "long_text_used": "none",
        }
        texts = [text]
        if n_tokens > limit:
            per_option = self.long_text == "per_option_mean" and options and self.text_mode != "question_only"
            info["long_text_used"] = "per_option_mean" if per_option else "truncate"
            if per_option:
                texts = _per_option_texts(question, options, self.text_mode)
        counts = [n_tokens] if len(texts) == 1 else [self._token_count(t) for t in texts]
        truncated = [c > limit for c in counts]
        for t, c, tr in zip(texts, counts, truncated, strict=True):
            if tr:
                self._warn_cut(t, c, limit)
        emb = self._embed_texts(texts)
        if emb.shape[0] > 1:
            emb = F.normalize(emb.mean(dim=0, keepdim=True), dim=-1)
        info.update(
            texts=texts,
            token_counts=counts,
            truncated=any(truncated),
            num_truncated=int(sum(truncated)),
            full_text_tokens=n_tokens,
        )
        return emb[0], info

    def _warn_cut(self, text: str, count: int, limit: int) -> None:
        """Count a cut text; warn on the first only (a dataset run would otherwise print one line per question)."""
        self.truncated_texts += 1
        level = logging.WARNING if self.truncated_texts == 1 else logging.DEBUG
        logger.log(level, "CLIP reads at most %d tokens: a text of %d tokens was cut to fit (shown once; each "
                   "selection records whether its text was cut): %.60s...", limit, count, text)

    # -- scoring ------------------------------------------------------------------------------------------
    def score(
        self,
        image_embeds: torch.Tensor,
        question: str,
        options: Sequence[str] = (),
        prompt: str | None = None,
    ) -> tuple[list[float], dict[str, Any]]:
        """Cosine similarities between normalised ``image_embeds`` ``(n, d)`` and the question text."""
        text_emb, info = self.text_embedding(question, options, prompt)
        img = F.normalize(image_embeds.float(), dim=-1)
        scores = (img @ text_emb).tolist()
        if not all(math.isfinite(s) for s in scores):
            raise InputError("CLIP produced non-finite similarity scores")
        return [float(s) for s in scores], info

    def select_with_embeddings(self, inp: SelectorInput, k: int, image_embeds: torch.Tensor) -> Selection:
        """:meth:`select` with precomputed candidate embeddings (from :meth:`frame_embeddings`)."""
        n = len(inp.candidates.indices)
        if image_embeds.shape[0] != n:
            raise InputError(f"got {image_embeds.shape[0]} frame embeddings for {n} candidates")
        check_keyframes(k)
        scores, info = self.score(image_embeds, inp.question, inp.options, self.prompt_text(inp))
        positions = topk_sorted(scores, k)
        extra = {**info, "pixels": self.pixels, "model": self.model_name, "score": "cosine"}
        return selection_from_positions(self.name, inp, positions, scores, config=self.config(), extra=extra)

    def select(self, inp: SelectorInput, k: int) -> Selection:
        """Top-``k`` candidates by cosine similarity, returned in temporal order."""
        check_keyframes(k, len(inp.candidates.indices))
        return self.select_with_embeddings(inp, k, self.frame_embeddings(inp))
