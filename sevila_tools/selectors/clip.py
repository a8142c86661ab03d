"""CLIP similarity keyframe selector (spec ``selectors.md`` §3).

Each candidate frame is scored by the cosine similarity between its CLIP image embedding
(``get_image_features``, projected) and the CLIP text embedding of the question (``get_text_features``,
projected EOS state); the ``k`` best candidates are returned in temporal order (ties -> lower index).

Options (all recorded in every :class:`~sevila_tools.selectors.base.Selection`):

- ``text_mode``: ``question_options`` (default, ``"{question} {a0} {a1} ..."``), ``sevila_prompt`` (SeViLA's
  Answerer prompt, ``sevila.md`` §4) or ``question_only``.
- ``long_text``: what to do when the text exceeds CLIP's 77-token context: ``truncate`` (default; HF
  truncation keeps BOS/EOS, like OpenAI ``clip.tokenize(..., truncate=True)``) or ``per_option_mean`` (embed
  one text per option, ``question + option_i``, average the L2-normalised embeddings and re-normalise; with
  one shared image embedding this ranks frames exactly like the mean of the per-option cosine similarities).
  Texts that fit are never changed; every truncation is logged.
- ``pixels``: ``native_crop`` (default) re-reads the candidate frames at native resolution and applies CLIP's
  own preprocessing (short side to 224, bicubic with antialiasing, centre crop 224, CLIP mean/std) implemented
  in torch; ``sevila_224`` uses the already-decoded 224x224 candidates (aspect ratio squashed, exactly the
  pixels SeViLA's Answerer sees).

``native_crop`` is the default because it is what CLIP was trained on and what the official CLIP pipeline
(and Moment-DETR's feature extractor) feeds it; ``sevila_224`` is offered for a pixel-parity comparison.

Image embeddings are computed by :meth:`CLIPSelector.image_embeddings` / :meth:`CLIPSelector.frame_embeddings`
separately from the text scoring (:meth:`CLIPSelector.score`), so one set of frame features can be reused for
several text settings (pass a shared ``feature_cache`` dict to several selectors).
"""

from __future__ import annotations

import gzip
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sevila_tools.errors import InputError, ModelLoadError
from sevila_tools.selectors.base import (
    Selection,
    Selector,
    SelectorInput,
    register,
    selection_from_positions,
    topk_sorted,
)

logger = logging.getLogger(__name__)

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_CONTEXT_LENGTH = 77
TEXT_MODES = ("question_options", "sevila_prompt", "question_only")
LONG_TEXT_MODES = ("truncate", "per_option_mean")
PIXEL_MODES = ("native_crop", "sevila_224")

__all__ = [
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
    "clip_pixel_values",
    "clip_tokenizer_from_bpe",
    "embedding_tensor",
    "load_clip",
    "resize_short_center_crop",
]


# ----------------------------------------------------------------------------------------------------------
# model outputs, pixels


def embedding_tensor(out: Any) -> torch.Tensor:
    """The projected embedding from ``get_image_features`` / ``get_text_features``.

    transformers >= 5 returns ``BaseModelOutputWithPooling`` (projected embedding in ``.pooler_output``);
    4.x returned the tensor itself. Both are accepted.
    """
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(out, (tuple, list)) and len(out) > 1 and isinstance(out[1], torch.Tensor):
        return out[1]
    raise TypeError(f"cannot find a projected embedding in a {type(out).__name__} output")


def resize_short_center_crop(frames: np.ndarray | torch.Tensor, size: int = 224) -> torch.Tensor:
    """Resize the short side to ``size`` (bicubic, antialiased) keeping the aspect ratio, then centre-crop.

    ``frames`` is ``(n, H, W, 3)`` uint8 RGB. The long side becomes ``int(long * size / short)`` (HF
    ``CLIPImageProcessor`` and Moment-DETR's ffmpeg ``scale`` use the same rule); the crop offset is
    ``(dim - size) // 2``. Returns ``(n, 3, size, size)`` float32 in ``[0, 255]``, rounded to integers like
    the uint8 image a PIL/ffmpeg resize produces.
    """
    x = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"expected frames of shape (n, H, W, 3), got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float()
    h, w = int(x.shape[2]), int(x.shape[3])
    if h <= w:
        new_h, new_w = size, int(w * size / h)
    else:
        new_h, new_w = int(h * size / w), size
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
        x = x.round().clamp_(0, 255)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[:, :, top : top + size, left : left + size].contiguous()


def clip_pixel_values(
    frames: np.ndarray | torch.Tensor, size: int = 224, resize: bool = True, std_eps: float = 0.0
) -> torch.Tensor:
    """uint8 ``(n, H, W, 3)`` frames -> CLIP ``pixel_values`` ``(n, 3, size, size)``.

    With ``resize`` the frames go through :func:`resize_short_center_crop` first (frames must then be at
    native resolution); then ``x / 255`` and ``(x - mean) / (std + std_eps)`` with the OpenAI CLIP mean/std
    (Moment-DETR's extractor uses ``std_eps=1e-8``).
    """
    if resize:
        x = resize_short_center_crop(frames, size)
    else:
        t = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        x = t.permute(0, 3, 1, 2).float()
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1) + std_eps
    return (x / 255.0 - mean) / std


# ----------------------------------------------------------------------------------------------------------
# tokenizers and models


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable unicode map (insertion order = CLIP's vocabulary order)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def clip_tokenizer_from_bpe(path: str | Path, model_max_length: int = CLIP_CONTEXT_LENGTH) -> Any:
    """Build the real CLIP tokenizer (49,408 tokens) from OpenAI's ``bpe_simple_vocab_16e6.txt.gz``.

    Merges are lines 2 ... 48,895 of the file; the vocabulary is the 256 byte symbols, the same with ``</w>``,
    the 48,894 merged strings, then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407)
    (``environment.md`` §3.4). Token ids equal OpenAI's ``simple_tokenizer``.
    """
    from transformers import CLIPTokenizer

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"CLIP BPE merges file not found: {path}")
    try:
        lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read CLIP BPE merges file {path}: {exc}") from None
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    if len(merges) != 48894 or any(len(m) != 2 for m in merges):
        raise ModelLoadError(f"{path} is not OpenAI CLIP's BPE merges file (expected 48,894 merges)")
    vocab_list = list(_bytes_to_unicode().values())
    vocab_list = vocab_list + [v + "</w>" for v in vocab_list]
    vocab_list += ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
    if tok.bos_token_id != 49406 or tok.eos_token_id != 49407 or len(tok) != 49408:
        raise ModelLoadError("CLIP tokenizer construction failed (unexpected special-token ids)")
    return tok


_TINY_WORDS = """why how what where when who which does do did is are was were the a an of and or to in on
at with for by from person people man woman boy girl baby dog cat ball car red green blue square moving left
right up down before after during while play playing hold holding walk walking run running sit sitting eat
eating look looking talk talking color shape video scene happen happened first last end start middle question
option options answer select correct considering information presented frame frames""".split()


def _tiny_clip_tokenizer() -> Any:
    """A word-piece tokenizer built in memory: BOS 0, EOS = PAD 1, UNK 2; known words are one token, other
    words fall back to characters (so no text maps to unknown tokens)."""
    import string

    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<|unk|>": 2}
    for piece in (
        _TINY_WORDS
        + list(string.ascii_lowercase + string.digits + string.punctuation)
        + ["##" + c for c in string.ascii_lowercase + string.digits]
    ):
        vocab.setdefault(piece, len(vocab))
    tk = Tokenizer(WordPiece(vocab, unk_token="<|unk|>", max_input_chars_per_word=100))
    tk.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()]
    )
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        pair="<|startoftext|> $A <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)],
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<|unk|>",
        model_max_length=CLIP_CONTEXT_LENGTH,
    )
    ids = tok("why did the dog run?").input_ids
    if tok.unk_token_id in ids or ids[0] != 0 or ids[-1] != 1:
        raise RuntimeError("tiny CLIP tokenizer construction failed")
    return tok


def build_tiny_clip(seed: int = 0) -> tuple[Any, Any, dict[str, Any]]:
    """A seeded random tiny CLIP (``environment.md`` §4.2, ~0.4 M params), its in-memory tokenizer and the
    image-processor settings it expects.

    Text tower: vocab 1000, hidden 64, 2 layers, BOS 0 / EOS 1 / PAD 1, 77 positions; vision tower: hidden
    64, 2 layers, image 224, patch 32; projection 32.
    Returns ``(CLIPModel (eval mode), tokenizer, processor_cfg)``.
    """
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_CONTEXT_LENGTH,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        patch_size=32,
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = CLIPModel(config)
    finally:
        torch.random.set_rng_state(state)
    processor_cfg = {
        "shortest_edge": 224,
        "crop_size": 224,
        "resample": "bicubic",
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
    }
    return model.eval(), _tiny_clip_tokenizer(), processor_cfg


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_clip(
    model_id_or_path: str | Path = DEFAULT_CLIP_MODEL, device: str | torch.device = "cpu"
) -> tuple[Any, Any]:
    """Load a CLIP model and its tokenizer with ``from_pretrained`` (a local directory or a hub id).

    Returns ``(CLIPModel in eval mode on device, tokenizer)``. Any failure is a one-line
    :class:`~sevila_tools.errors.ModelLoadError`; an id that is neither a local directory nor in the local
    cache while offline (``HF_HUB_OFFLINE=1``) says so explicitly.
    """
    from transformers import AutoTokenizer, CLIPModel

    name = str(model_id_or_path)
    local = Path(name).expanduser()
    is_local = local.exists()
    if is_local and not local.is_dir():
        raise ModelLoadError(
            f"CLIP model path {name!r} is not a directory (expected a from_pretrained folder)"
        )
    try:
        model = CLIPModel.from_pretrained(str(local) if is_local else name)
        tokenizer = AutoTokenizer.from_pretrained(str(local) if is_local else name)
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one readable line
        if not is_local and _offline():
            raise ModelLoadError(
                f"cannot load CLIP model {name!r}: not a local directory and not in the local Hugging Face "
                "cache (offline mode, HF_HUB_OFFLINE=1); download it beforehand or pass a local folder"
            ) from None
        raise ModelLoadError(f"cannot load CLIP model {name!r}: {_first_line(exc)}") from None
    return model.to(device).eval(), tokenizer


# ----------------------------------------------------------------------------------------------------------
# texts


def build_text(question: str, options: Sequence[str], text_mode: str) -> str:
    """The CLIP text for one question in ``text_mode`` (see module docstring)."""
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


def _check_choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise InputError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


# ----------------------------------------------------------------------------------------------------------
# selector


@register
class CLIPSelector(Selector):
    """Rank candidates by CLIP image-text cosine similarity (``selectors.md`` §3).

    Args:
        model: a ``CLIPModel``, or a model id / local folder loaded lazily with :func:`load_clip`
            (default ``openai/clip-vit-base-patch32``).
        tokenizer: the tokenizer matching ``model``; required when ``model`` is an object.
        text_mode: ``question_options`` (default) | ``sevila_prompt`` | ``question_only``.
        long_text: ``truncate`` (default) | ``per_option_mean`` (only used when the text exceeds 77 tokens).
        pixels: ``native_crop`` (default) | ``sevila_224``.
        device: torch device for the model.
        batch_size: frames per image-encoder batch.
        feature_cache: optional dict shared between selectors to reuse frame embeddings
            (keyed by model, pixel mode, video and candidate indices).
    """

    name = "clip"
    description = "Top-k candidates by CLIP cosine similarity between each frame and the question text."

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
    ) -> None:
        self.text_mode = _check_choice(text_mode, TEXT_MODES, "CLIP text_mode")
        self.long_text = _check_choice(long_text, LONG_TEXT_MODES, "CLIP long_text mode")
        self.pixels = _check_choice(pixels, PIXEL_MODES, "CLIP pixels mode")
        if batch_size < 1:
            raise InputError("batch_size must be >= 1")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.feature_cache = feature_cache
        if model is None or isinstance(model, (str, Path)):
            self.model_name = str(model or DEFAULT_CLIP_MODEL)
            self._model = None
        else:
            if tokenizer is None:
                raise InputError("CLIPSelector: pass the tokenizer that matches the given CLIP model")
            name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
            self.model_name = str(name)
            self._model = model.to(self.device).eval()
        self._tokenizer = tokenizer

    @classmethod
    def from_runtime(cls, runtime: Any = None, **options: Any) -> CLIPSelector:
        """Build for a SeViLA runtime: with random-weight (``tiny-random``) runtimes a tiny random CLIP is used so
        everything runs offline; otherwise ``model`` (default ``openai/clip-vit-base-patch32``) loads lazily."""
        if runtime is not None:
            options.setdefault("device", runtime.device)
            if runtime.random_weights and options.get("model") is None:
                model, tok, _ = build_tiny_clip()
                options.update(model=model, tokenizer=tok)
        return cls(**options)

    # -- model access -------------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The CLIP model (loaded on first use when an id was given)."""
        if self._model is None:
            model, tok = load_clip(self.model_name, self.device)
            self._model = model
            if self._tokenizer is None:
                self._tokenizer = tok
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The CLIP tokenizer (loaded with the model when an id was given)."""
        if self._tokenizer is None:
            _ = self.model
        return self._tokenizer

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

    # -- images -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised projected image embeddings ``(n, d)`` (float32, CPU) for CLIP ``pixel_values``."""
        model = self.model
        dtype = next(model.parameters()).dtype
        outs = []
        for i in range(0, pixel_values.shape[0], self.batch_size):
            batch = pixel_values[i : i + self.batch_size].to(self.device, dtype)
            outs.append(embedding_tensor(model.get_image_features(pixel_values=batch)).float().cpu())
        return F.normalize(torch.cat(outs), dim=-1)

    def candidate_pixels(self, inp: SelectorInput) -> torch.Tensor:
        """CLIP ``pixel_values`` of the candidates for the configured ``pixels`` mode."""
        cand = inp.candidates
        if self.pixels == "sevila_224":
            from sevila_tools.video import preprocess

            return preprocess(cand.frames).float()
        from sevila_tools.video import read_frames

        frames, _ = read_frames(inp.video, [int(i) for i in cand.indices], decoder=cand.decoder, size=None)
        return clip_pixel_values(frames, size=self._image_size())

    def _image_size(self) -> int:
        cfg = getattr(self.model.config, "vision_config", None)
        return int(getattr(cfg, "image_size", 224) or 224)

    def frame_embeddings(self, inp: SelectorInput) -> torch.Tensor:
        """Normalised image embeddings ``(n_candidates, d)`` of the candidates (cached if configured)."""
        key = None
        if self.feature_cache is not None:
            key = (
                self.model_name,
                id(self.model),
                self.pixels,
                str(inp.video),
                tuple(int(i) for i in inp.candidates.indices),
            )
            if key in self.feature_cache:
                return self.feature_cache[key]
        emb = self.image_embeddings(self.candidate_pixels(inp))
        if key is not None:
            self.feature_cache[key] = emb
        return emb

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

    def text_embedding(
        self, question: str, options: Sequence[str] = ()
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Normalised text embedding ``(d,)`` for ``question``/``options`` and a record of how it was made.

        The record holds ``text_mode``, ``long_text``, ``long_text_used`` (``none`` when the text fits,
        otherwise ``truncate`` or ``per_option_mean``), ``texts``, ``token_counts`` and ``truncated``.
        """
        if not question or not question.strip():
            raise InputError("the question is empty")
        text = build_text(question, options, self.text_mode)
        limit = self.max_length
        n_tokens = self._token_count(text)
        info: dict[str, Any] = {
            "text_mode": self.text_mode,
            "long_text": self.long_text,
            "max_length": limit,
            "long_text_used": "none",
        }
        texts = [text]
        if (
            n_tokens > limit
            and self.long_text == "per_option_mean"
            and options
            and self.text_mode != "question_only"
        ):
            texts = _per_option_texts(question, options, self.text_mode)
            info["long_text_used"] = "per_option_mean"
        elif n_tokens > limit:
            info["long_text_used"] = "truncate"
        counts = [n_tokens] if len(texts) == 1 else [self._token_count(t) for t in texts]
        truncated = [c > limit for c in counts]
        for t, c, tr in zip(texts, counts, truncated, strict=True):
            if tr:
                logger.warning("CLIP text truncated from %d to %d tokens: %.80r", c, limit, t)
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

    # -- scoring ------------------------------------------------------------------------------------------
    def score(
        self, image_embeds: torch.Tensor, question: str, options: Sequence[str] = ()
    ) -> tuple[list[float], dict[str, Any]]:
        """Cosine similarities between normalised ``image_embeds`` ``(n, d)`` and the question text."""
        text_emb, info = self.text_embedding(question, options)
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
        if k < 1:
            raise InputError(f"k must be >= 1 (got {k})")
        scores, info = self.score(image_embeds, inp.question, inp.options)
        positions = topk_sorted(scores, k)
        extra = {**info, "pixels": self.pixels, "model": self.model_name, "score": "cosine"}
        return selection_from_positions(self.name, inp, positions, scores, config=self.config(), extra=extra)

    def select(self, inp: SelectorInput, k: int) -> Selection:
        """Top-``k`` candidates by cosine similarity, returned in temporal order."""
        if k > len(inp.candidates.indices):
            raise InputError(
                f"cannot select {k} keyframes from {len(inp.candidates.indices)} candidate frames"
            )
        return self.select_with_embeddings(inp, k, self.frame_embeddings(inp))
