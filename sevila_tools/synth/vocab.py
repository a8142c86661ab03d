"""The word list and tokenizer of the trained tiny presets: every word of SeViLA's prompts and of NeedleQA is one
piece; anything else falls back to characters. Saved as files next to the preset's weights."""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterable
from typing import Any

from sevila_tools.prompts import LOC_INSTRUCTION, LOC_INSTRUCTION_VLEP, QA_INSTRUCTION, VLEP_HEAD
from sevila_tools.synth.world import COLOURS, KINDS, PLACES, TEMPLATES

#: words of the pre-training texts (questions, captions) and common question words
EXTRA_WORDS = """Question Options Option Answer Frame A B C D E yes no a an and the of in on at is are was were
there what which where when who why how does do did that appears appear appeared shape shapes colour color
grey gray nothing but frame video clip scene happen happens moving left right up down top bottom middle
first last before after object objects thing things many one two three""".split()


def words() -> list[str]:
    """All whole-word pieces, in a fixed order (the token ids depend on it)."""
    texts = [LOC_INSTRUCTION, LOC_INSTRUCTION_VLEP, QA_INSTRUCTION, VLEP_HEAD, *(t for t, _ in TEMPLATES.values())]
    found = [*EXTRA_WORDS, *COLOURS, *KINDS, *(w for p in PLACES for w in p.split())]
    for text in texts:
        found += [w.strip("?.,:()") for w in text.replace("{", " ").replace("}", " ").split()]
    out: list[str] = []
    for w in found:
        if w and w not in out and w not in ("kind", "colour}"):
            out.append(w)
    return out


def unigram_vocab(pieces: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """A T5-style unigram vocabulary: the special tokens, then ``pieces`` (first occurrence of each kept), then every
    ASCII letter, digit and punctuation mark with and without ``▁`` as the fallback (score -10)."""
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    seen = {p for p, _ in vocab}
    chars = ((piece, -10.0) for ch in string.ascii_letters + string.digits + string.punctuation
             for piece in (ch, "\u2581" + ch))
    for piece, score in itertools.chain(pieces, chars):
        if piece not in seen:
            vocab.append((piece, score))
            seen.add(piece)
    return vocab


def build_tokenizer() -> Any:
    """A T5-style unigram tokenizer: ``▁word`` and ``word`` pieces for every word, characters as fallback."""
    from transformers import T5Tokenizer

    vocab = unigram_vocab((piece, score) for w in words() for piece, score in (("\u2581" + w, -5.0), (w, -6.0)))
    tok = T5Tokenizer(vocab=vocab, extra_ids=0)
    probe = "Frame 1: Question: what colour is the star that appears? Options: (red. blue. ) yes"
    if tok.unk_token_id in tok(probe, add_special_tokens=False).input_ids:
        raise RuntimeError("tokenizer construction failed (unknown tokens)")
    return tok
