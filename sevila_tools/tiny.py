"""The tiny presets. ``tiny-random``: SeViLA's layout at toy size, seeded random weights and an in-memory T5-style
tokenizer (tests and parity; its token ids differ from Flan-T5's, see ``docs/method.md``, "Token ids").
``tiny-base`` and ``tiny-trained``: weights trained here on NeedleQA, shipped as model folders inside the package
(``scripts/train_tiny.sh``, ``docs/results.md``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, T5Config, T5Tokenizer

from sevila_tools.modeling import SevilaModel

TINY_NAME = "tiny-random"
TINY_SEED = 0
#: presets shipped as model folders (safetensors, config, tokenizer): name -> (folder, description)
TRAINED_PRESETS: dict[str, tuple[str, str]] = {
    "tiny-base": ("tiny_base", "tiny base model pre-trained on NeedleQA frames (zero-shot Answerer, untrained "
                  "Localizer = copy of the Answerer)"),
    "tiny-trained": ("tiny_trained", "tiny SeViLA trained on NeedleQA: pre-trained + self-refined Localizer, "
                     "fine-tuned Answerer"),
}


def preset_folder(name: str) -> Path:
    """The model folder of a shipped trained preset (``tiny-base``, ``tiny-trained``)."""
    return Path(__file__).resolve().parent / "presets" / TRAINED_PRESETS[name][0]

# words of SeViLA's prompt templates plus common question words; everything else falls back to characters
_WORDS = """Frame Question Options Option Answer A B C D E yes no Does the information within frame provide necessary
details to accurately answer given question Considering presented in select correct from options Upon observing
provided frames what is most probable subsequent event predict next why how where when who which does do did are
was were a an of and or on at with for by person people man woman men women boy girl dog cat ball car red green blue
square moving left right up down before after during while play playing hold holding walk walking run running sit
sitting eat eating look looking talk talking color colour shape video clip scene happen happens happened first last
end start middle""".split()


def tiny_tokenizer() -> T5Tokenizer:
    """A T5-style tokenizer built in memory (no files, no download)."""
    from sevila_tools.synth.vocab import unigram_vocab

    vocab = unigram_vocab(("\u2581" + w, -5.0) for w in _WORDS)
    tok = T5Tokenizer(vocab=vocab, extra_ids=100)
    ids = tok("Frame 1: yes", add_special_tokens=False).input_ids
    if tok.unk_token_id in ids:  # guard against a tokenizer that silently maps everything to <unk>
        raise RuntimeError("tiny tokenizer construction failed (unknown tokens)")
    return tok


def tiny_config() -> Blip2Config:
    """BLIP-2 config at toy size with SeViLA's layout (224 px, patch 14 -> 257 tokens, 32 queries,
    cross-attention every 2nd Q-Former layer as in the real model)."""
    vision = Blip2VisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        patch_size=14,
    )
    qformer = Blip2QFormerConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        cross_attention_frequency=2,
    )
    text = T5Config(
        vocab_size=len(tiny_tokenizer()),  # every id the tiny model can emit decodes to a piece
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=32)


def init_random_(model: SevilaModel) -> None:
    """Random init for a directly-constructed model (transformers 5 leaves a standalone ViT at zero).

    Weights ~ N(0, fan_in^-0.5) so activations keep unit scale at any size (with BLIP-2's std 0.02 the query
    tokens would be negligible next to T5's word embeddings and every frame would score the same), biases 0,
    LayerNorms 1/0. T5 keeps its own init."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("language_model."):
                continue
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:  # LayerNorm weights
                p.fill_(1.0)
            elif "embedding" in name or "query_tokens" in name:
                p.normal_(std=1.0)
            else:
                p.normal_(std=p[0].numel() ** -0.5)


def tiny_model(seed: int = TINY_SEED) -> SevilaModel:
    """Seeded random tiny SeViLA model (deterministic for a given seed). Both branches are independently random."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = SevilaModel(tiny_config())
        init_random_(model)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()
