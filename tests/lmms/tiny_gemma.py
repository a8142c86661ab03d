"""A tiny random Gemma3 (vision + text, ~46 k parameters) with a hand-made word-level tokenizer, saved as a local
folder that lmms-eval's built-in ``gemma3`` model loads offline on CPU (no torchvision: the PIL image processor)."""

from __future__ import annotations

import sys
from pathlib import Path

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_image>", "<image_soft_token>", "<end_of_image>",
           "<start_of_turn>", "<end_of_turn>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<start_of_image>{% elif c['type'] == 'text' %}"
    "{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def make_tiny_gemma3(out: Path) -> Path:
    """Write config, random weights (seeded), tokenizer, image processor and chat template to ``out``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        Gemma3TextConfig,
        PreTrainedTokenizerFast,
        SiglipVisionConfig,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    words = ["A", "B", "C", "D", "E", "the", "is", "what", "?", ".", "\n", "user", "model", "system"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(SPECIAL + words + [chr(c) for c in range(32, 127)]))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="isolated")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens={"boi_token": "<start_of_image>", "image_token": "<image_soft_token>",
                              "eoi_token": "<end_of_image>"},
    )
    proc = Gemma3Processor(image_processor=Gemma3ImageProcessorPil(size={"height": 28, "width": 28}), tokenizer=tok,
                           chat_template=CHAT_TEMPLATE, image_seq_length=4)
    text = Gemma3TextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=4096,
                            sliding_window=64, pad_token_id=vocab["<pad>"], bos_token_id=vocab["<bos>"],
                            eos_token_id=vocab["<eos>"])
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=7)
    cfg = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                       boi_token_index=vocab["<start_of_image>"], eoi_token_index=vocab["<end_of_image>"],
                       image_token_index=vocab["<image_soft_token>"])
    torch.manual_seed(0)
    Gemma3ForConditionalGeneration(cfg).save_pretrained(out)
    proc.save_pretrained(out)
    return out


if __name__ == "__main__":
    make_tiny_gemma3(Path(sys.argv[1]))
