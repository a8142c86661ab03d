"""CLIP building blocks shared by the ``clip``, ``scene`` and ``moment_detr`` selectors: pixels, tokenizers,
the tiny random CLIP and (memoised) loading. Background: ``docs/selectors.md``."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sevila_tools.errors import InputError, ModelLoadError, first_line
from sevila_tools.selectors.memo import shared_model

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
TINY_CLIP_NAME = "tiny-random-clip"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_CONTEXT_LENGTH = 77

__all__ = [
    "CLIP_CONTEXT_LENGTH",
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_CLIP_MODEL",
    "LazyCLIP",
    "TINY_CLIP_NAME",
    "build_tiny_clip",
    "clip_pixel_values",
    "clip_tokenizer_from_bpe",
    "embedding_tensor",
    "load_clip",
    "resize_short_center_crop",
    "shared_clip",
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
    Token ids equal OpenAI's ``simple_tokenizer``.
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
    # the tokenizers backend takes the merges as pairs (its annotation names only strings)
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)  # type: ignore[arg-type]
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
    """A seeded random tiny CLIP (~0.4 M params), its in-memory tokenizer and the
    image-processor settings it expects.

    Text tower: vocab 1000, hidden 64, 2 layers, BOS 0 / EOS 1 / PAD 1, 77 positions; vision tower: hidden
    64, 2 layers, image 224, patch 32; projection 32.
    Returns ``(CLIPModel (eval mode), tokenizer, processor_cfg)``.
    """
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    tower: dict[str, Any] = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
    text = CLIPTextConfig(vocab_size=1000, max_position_embeddings=CLIP_CONTEXT_LENGTH, bos_token_id=0,
                          eos_token_id=1, pad_token_id=1, **tower)
    vision = CLIPVisionConfig(image_size=224, patch_size=32, **tower)
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random numbers
        torch.manual_seed(seed)
        model = CLIPModel(config)
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
        raise ModelLoadError(f"cannot load CLIP model {name!r}: {first_line(exc)}") from None
    return model.to(device).eval(), tokenizer  # type: ignore[arg-type]  # transformers types .to() oddly


def _clip_key(name: str) -> str:
    local = Path(name).expanduser()
    return str(local.resolve()) if local.exists() else name


def shared_clip(name: str | Path | None, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """``(CLIPModel, tokenizer)`` loaded once per process and device (``None`` = the default model,
    :data:`TINY_CLIP_NAME` = the seeded tiny random CLIP); later calls return the same objects."""
    dev = torch.device(device)
    name = str(name or DEFAULT_CLIP_MODEL)
    if name == TINY_CLIP_NAME:

        def tiny() -> tuple[Any, Any]:
            model, tok, _ = build_tiny_clip()
            return model.to(dev).eval(), tok

        return shared_model(("clip", TINY_CLIP_NAME, 0, str(dev)), tiny)
    return shared_model(("clip", _clip_key(name), str(dev)), lambda: load_clip(name, dev))


class LazyCLIP:
    """A selector's CLIP model: named by id or folder (None: the default), loaded on first use and shared by every
    selector of the process; or given as an object together with its tokenizer. ``name`` labels it in records."""

    def __init__(
        self, model: Any, tokenizer: Any, device: torch.device, label: str | None = None, owner: str = "selector"
    ) -> None:
        self.device = device
        self._tokenizer = tokenizer
        if model is None or isinstance(model, (str, Path)):
            self.name, self._model = str(model or DEFAULT_CLIP_MODEL), None
            return
        if tokenizer is None:
            raise InputError(f"{owner}: pass the tokenizer that matches the given CLIP model")
        config = getattr(model, "config", None)
        self.name = str(label or getattr(config, "_name_or_path", "") or type(model).__name__)
        self._model = model.to(device).eval()

    @property
    def model(self) -> Any:
        """The CLIP model (loaded on first use when a name was given)."""
        if self._model is None:
            self._model, tok = shared_clip(self.name, self.device)
            if self._tokenizer is None:
                self._tokenizer = tok
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The CLIP tokenizer (loaded with the model when a name was given)."""
        if self._tokenizer is None:
            _ = self.model
        return self._tokenizer

    @property
    def image_size(self) -> int:
        """The vision tower's input size (224 for CLIP)."""
        cfg = getattr(self.model.config, "vision_config", None)
        return int(getattr(cfg, "image_size", 224) or 224)

    @torch.no_grad()
    def image_embeddings(self, batches: Iterable[torch.Tensor], eps: float = 1e-12) -> torch.Tensor:
        """L2-normalised projected image embeddings ``(n, d)`` (float32, CPU) of batches of CLIP pixel values."""
        model = self.model
        dtype = next(model.parameters()).dtype
        outs = [embedding_tensor(model.get_image_features(pixel_values=b.to(self.device, dtype))).float().cpu()
                for b in batches]
        return F.normalize(torch.cat(outs), dim=-1, eps=eps)
