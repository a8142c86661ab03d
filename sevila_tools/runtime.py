"""The shared SeViLA runtime: one model, one tokenizer, one device and precision policy.

Every tool, selector, run and training stage goes through it; it is the only place where SeViLA's T5 inputs
are assembled (input layouts, decoding rules, token ids: ``docs/method.md``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from sevila_tools.errors import ModelLoadError
from sevila_tools.modeling import Branch, SevilaModel
from sevila_tools.prompts import FRAME_PREFIX, LETTERS, video_prefix

log = logging.getLogger("sevila_tools.runtime")

MAX_TEXT_LEN = 77
Decoding = Literal["faithful", "teacher_forced"]
#: ids of the real Flan-T5 tokenizer (docs/method.md, "Token ids"); checked whenever that tokenizer is in use
FLAN_T5_IDS = {"yes": 4273, "no": 150, "letters": [71, 272, 205, 309, 262]}
FLAN_T5_VOCAB = 32100


def _cache_kwargs(output: Any) -> dict[str, Any]:
    """The decoder cache of a previous step, under the argument name this ``transformers`` version uses."""
    import inspect

    from transformers import T5ForConditionalGeneration

    if "cache" in inspect.signature(T5ForConditionalGeneration.forward).parameters:
        return {"cache": output.cache}
    return {"past_key_values": output.past_key_values}


@dataclass(frozen=True)
class TokenIds:
    """Token ids SeViLA reads logits at, derived from the tokenizer (never hard-coded)."""

    yes: int
    no: int
    letters: tuple[int, ...]
    option: int
    pad: int
    eos: int
    decoder_start: int

    @classmethod
    def from_tokenizer(cls, tok: Any, decoder_start: int) -> TokenIds:
        """Derive ids; each word must be one token. With the real Flan-T5 tokenizer, assert the spec's ids."""

        def one(word: str) -> int:
            ids = tok(word, add_special_tokens=False).input_ids
            if len(ids) != 1 or ids[0] == tok.unk_token_id:
                raise ModelLoadError(f"tokenizer does not encode {word!r} as one known token (got {ids})")
            return int(ids[0])

        ids = cls(
            yes=one("yes"),
            no=one("no"),
            letters=tuple(one(L) for L in LETTERS),
            option=one("Option"),
            pad=int(tok.pad_token_id),
            eos=int(tok.eos_token_id),
            decoder_start=int(decoder_start),
        )
        if len(tok) == FLAN_T5_VOCAB or getattr(tok, "vocab_size", None) == FLAN_T5_VOCAB:
            got = {"yes": ids.yes, "no": ids.no, "letters": list(ids.letters)}
            if got != FLAN_T5_IDS:
                raise ModelLoadError(f"Flan-T5 tokenizer gives ids {got}, expected {FLAN_T5_IDS}")
        return ids


@dataclass(frozen=True)
class Precision:
    """dtypes of the three parts. CPU: all fp32. CUDA: ViT fp16, Q-Formers fp32, T5 bf16 (configurable)."""

    vit: torch.dtype = torch.float32
    qformer: torch.dtype = torch.float32
    t5: torch.dtype = torch.float32

    @classmethod
    def for_device(cls, device: torch.device, vit: str | None = None, t5: str | None = None) -> Precision:
        names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if device.type == "cuda":
            return cls(vit=names[vit or "fp16"], qformer=torch.float32, t5=names[t5 or "bf16"])
        return cls(vit=names[vit or "fp32"], qformer=torch.float32, t5=names[t5 or "fp32"])

    def describe(self) -> dict[str, str]:
        short = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
        return {"vit": short[self.vit], "qformer": short[self.qformer], "t5": short[self.t5]}


@dataclass
class AnswerOutput:
    """Answerer output for a batch of questions."""

    letter_logits: torch.Tensor  # (B, n) logits at the option letters (decoder step 1)
    step0_tokens: list[int]  # greedy token at decoder step 0 (normally "▁Option")
    truncated: list[bool]  # qa text hit the 77-token limit

    @property
    def predictions(self) -> list[int]:
        return self.letter_logits.argmax(-1).tolist()

    @property
    def probs(self) -> torch.Tensor:
        return self.letter_logits.float().softmax(-1)


@dataclass
class SevilaRuntime:
    """One loaded SeViLA model shared by all tools. Build with :func:`sevila_tools.loading.load_runtime`."""

    model: SevilaModel
    tokenizer: Any
    device: torch.device
    precision: Precision
    info: dict[str, Any] = field(default_factory=dict)
    vit_batch_size: int = 32
    t5_batch_size: int = 128

    def __post_init__(self) -> None:
        self.ids = TokenIds.from_tokenizer(
            self.tokenizer, self.model.language_model.config.decoder_start_token_id or 0
        )
        self._prefix_cache: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        self.truncated_texts = 0  # texts cut at the 77-token limit so far

    @property
    def random_weights(self) -> bool:
        """True when the weights are random (the ``tiny-random`` preset or ``--size full`` benchmarks)."""
        return bool(self.info.get("random_weights", False))

    # ------------------------------------------------------------------ precision contexts
    def _autocast(self, dtype: torch.dtype) -> contextlib.AbstractContextManager:
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    # ------------------------------------------------------------------ vision
    def pixels(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 frames ``(n, 224, 224, 3)`` -> normalised ``(n, 3, 224, 224)`` float32 on the device."""
        from sevila_tools.video import preprocess

        t = torch.as_tensor(frames) if not isinstance(frames, torch.Tensor) else frames
        return preprocess(t.to(self.device))

    def vit(self, frames: np.ndarray | torch.Tensor, grad: bool = False) -> torch.Tensor:
        """Raw ViT features ``(n, 257, D)`` float32 of uint8 frames (or already normalised pixels)."""
        x = frames
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            x = self.pixels(frames)
        x = x.to(self.device)
        outs = []
        with torch.set_grad_enabled(grad), self._autocast(self.precision.vit):
            for i in range(0, x.shape[0], self.vit_batch_size):
                outs.append(self.model.vision_features(x[i : i + self.vit_batch_size]).float())
        return torch.cat(outs) if outs else torch.empty(0)

    # ------------------------------------------------------------------ text pieces
    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
        """Tokenize a batch like the official code; also report which texts were truncated at 77 tokens."""
        enc = self.tokenizer(
            texts, padding="longest", truncation=True, max_length=MAX_TEXT_LEN, return_tensors="pt"
        )
        full = self.tokenizer(texts, add_special_tokens=True).input_ids
        truncated = [len(ids) > MAX_TEXT_LEN for ids in full]
        for text, cut in zip(texts, truncated, strict=True):
            if cut:  # warn once per runtime; the count is reported by runs (summaries)
                self.truncated_texts += 1
                level = logging.WARNING if self.truncated_texts == 1 else logging.DEBUG
                log.log(level, "text truncated to %d T5 tokens (shown once; runs count them): %.80s...",
                        MAX_TEXT_LEN, text)
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device), truncated

    def _prefixes(self, prefixes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        if prefixes not in self._prefix_cache:
            enc = self.tokenizer(
                list(prefixes),
                padding="longest",
                add_special_tokens=False,
                truncation=True,
                max_length=MAX_TEXT_LEN,
                return_tensors="pt",
            )
            self._prefix_cache[prefixes] = (enc.input_ids.to(self.device), enc.attention_mask.to(self.device))
        return self._prefix_cache[prefixes]

    def single_frame_inputs(
        self, raw: torch.Tensor, texts: list[str], branch: Branch
    ) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
        """T5 encoder inputs ``[embed("Frame: ") | Q (32) | text]`` for raw features ``(B, T, L, D)``."""
        b, t = raw.shape[:2]
        queries = self.model.frame_queries(raw.flatten(0, 1), branch)  # (B*T, 32, d)
        p_ids, p_mask = self._prefixes((FRAME_PREFIX,))
        t_ids, t_mask, truncated = self.tokenize(texts)
        n = b * t
        embeds = torch.cat(
            [
                self.model.embed_tokens(p_ids).expand(n, -1, -1),
                queries,
                self.model.embed_tokens(t_ids).repeat_interleave(t, 0),
            ],
            dim=1,
        )
        q_mask = torch.ones(queries.shape[:2], dtype=p_mask.dtype, device=self.device)
        mask = torch.cat([p_mask.expand(n, -1), q_mask, t_mask.repeat_interleave(t, 0)], dim=1)
        return embeds, mask, truncated

    def multi_frame_inputs(
        self, raw: torch.Tensor, texts: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
        """Answerer inputs ``[P1 | Q1 | ... | Pk | Qk | qa_text]`` for keyframe features ``(B, K, L, D)``."""
        b, k = raw.shape[:2]
        queries = self.model.frame_queries(raw.flatten(0, 1), "answerer")
        queries = queries.view(b, k, queries.shape[1], -1)
        p_ids, p_mask = self._prefixes(
            tuple(video_prefix(i + 1) for i in range(k))
        )  # (K, p), padded to longest
        p_emb = self.model.embed_tokens(p_ids).unsqueeze(0).expand(b, -1, -1, -1)
        frames = torch.cat([p_emb, queries], dim=2).reshape(b, -1, queries.shape[-1])
        q_mask = torch.ones(b, k, queries.shape[2], dtype=p_mask.dtype, device=self.device)
        f_mask = torch.cat([p_mask.unsqueeze(0).expand(b, -1, -1), q_mask], dim=2).reshape(b, -1)
        t_ids, t_mask, truncated = self.tokenize(texts)
        embeds = torch.cat([frames, self.model.embed_tokens(t_ids)], dim=1)
        return embeds, torch.cat([f_mask, t_mask], dim=1), truncated

    # ------------------------------------------------------------------ T5 calls
    def _encode(self, embeds: torch.Tensor, mask: torch.Tensor) -> Any:
        with self._autocast(self.precision.t5):
            return self.model.language_model.get_encoder()(inputs_embeds=embeds, attention_mask=mask)

    def _decode(self, enc: Any, mask: torch.Tensor, decoder_ids: torch.Tensor) -> torch.Tensor:
        with self._autocast(self.precision.t5):
            out = self.model.language_model(
                encoder_outputs=enc, attention_mask=mask, decoder_input_ids=decoder_ids
            )
        return out.logits.float()

    def _start(self, n: int, *rest: torch.Tensor) -> torch.Tensor:
        start = torch.full((n, 1), self.ids.decoder_start, dtype=torch.long, device=self.device)
        return torch.cat([start, *[r.view(n, 1) for r in rest]], dim=1)

    def _first_step_logits(
        self, embeds: torch.Tensor, mask: torch.Tensor, token_ids: list[int]
    ) -> torch.Tensor:
        """Decoder step-0 logits ``(N, len(token_ids))`` at the given tokens, in chunks of ``t5_batch_size``.

        Only the needed ``lm_head`` rows are applied to the decoder's last hidden state: the same numbers as
        ``generate(...).scores[0][:, token_ids]`` without building ``N x vocab`` float logits."""
        lm = self.model.language_model
        rows = lm.lm_head.weight[token_ids]
        scale = lm.config.d_model**-0.5 if getattr(lm.config, "scale_decoder_outputs", False) else None
        outs = []
        for i in range(0, embeds.shape[0], self.t5_batch_size):
            e, m = embeds[i : i + self.t5_batch_size], mask[i : i + self.t5_batch_size]
            with self._autocast(self.precision.t5):
                enc = self._encode(e, m).last_hidden_state
                h = lm.get_decoder()(
                    input_ids=self._start(e.shape[0]),
                    encoder_hidden_states=enc,
                    encoder_attention_mask=m,
                    use_cache=False,
                ).last_hidden_state[:, 0]
                if scale is not None:
                    h = h * scale
                outs.append(torch.nn.functional.linear(h, rows).float())
        return torch.cat(outs)

    # ------------------------------------------------------------------ Localizer
    @torch.no_grad()
    def localizer_logits(self, raw: torch.Tensor, loc_texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(yes, no) first-step logits ``(B, T)`` for raw features ``(B, T, L, D)`` and one text per question."""
        b, t = raw.shape[:2]
        embeds, mask, _ = self.single_frame_inputs(raw, loc_texts, "localizer")
        logits = self._first_step_logits(embeds, mask, [self.ids.yes, self.ids.no])
        return logits[:, 0].view(b, t), logits[:, 1].view(b, t)

    # ------------------------------------------------------------------ Answerer
    def _letters(self, logits: torch.Tensor, num_options: int) -> torch.Tensor:
        return logits[:, list(self.ids.letters[:num_options])]

    def _decode_options(
        self, embeds: torch.Tensor, mask: torch.Tensor, num_options: int, decoding: Decoding
    ) -> tuple[torch.Tensor, list[int]]:
        n = embeds.shape[0]
        letter_logits, step0 = [], []
        for i in range(0, n, self.t5_batch_size):
            e, m = embeds[i : i + self.t5_batch_size], mask[i : i + self.t5_batch_size]
            enc = self._encode(e, m)
            if decoding == "faithful":  # official: generate() greedy, scores[1] at the letters
                lm = self.model.language_model
                with self._autocast(self.precision.t5):
                    out0 = lm(
                        encoder_outputs=enc,
                        attention_mask=m,
                        decoder_input_ids=self._start(e.shape[0]),
                        use_cache=True,
                    )
                    w0 = out0.logits[:, -1].argmax(-1)
                    out1 = lm(
                        encoder_outputs=enc,
                        attention_mask=m,
                        decoder_input_ids=w0[:, None],
                        use_cache=True,
                        **_cache_kwargs(out0),
                    )  # step 1 reuses step 0's cache
                logits = torch.cat([out0.logits, out1.logits], dim=1).float()
            elif decoding == "teacher_forced":  # decoder sees [start, "▁Option"]
                opt = torch.full((e.shape[0],), self.ids.option, dtype=torch.long, device=self.device)
                logits = self._decode(enc, m, self._start(e.shape[0], opt))
                w0 = logits[:, 0].argmax(-1)
            else:
                raise ValueError(f"unknown decoding {decoding!r}")
            letter_logits.append(self._letters(logits[:, 1], num_options))
            step0 += w0.tolist()
        return torch.cat(letter_logits), step0

    @torch.no_grad()
    def answer(
        self,
        raw_keyframes: torch.Tensor,
        qa_texts: list[str],
        num_options: int,
        decoding: Decoding = "faithful",
    ) -> AnswerOutput:
        """Multi-frame Answerer on keyframe features ``(B, K, L, D)`` (keyframes in temporal order)."""
        embeds, mask, truncated = self.multi_frame_inputs(raw_keyframes, qa_texts)
        logits, step0 = self._decode_options(embeds, mask, num_options, decoding)
        return AnswerOutput(letter_logits=logits, step0_tokens=step0, truncated=truncated)

    @torch.no_grad()
    def frame_answers(
        self, raw: torch.Tensor, qa_texts: list[str], num_options: int, decoding: Decoding = "teacher_forced"
    ) -> AnswerOutput:
        """Single-frame Answerer on every frame of ``(B, T, L, D)``; logits come back as ``(B*T, n)``.

        Teacher-forced is what the reverse chain uses for pseudo-labels (docs/method.md, "Pseudo-labels");
        faithful is the official uniform single-frame path (voting baseline)."""
        embeds, mask, truncated = self.single_frame_inputs(raw, qa_texts, "answerer")
        logits, step0 = self._decode_options(embeds, mask, num_options, decoding)
        return AnswerOutput(letter_logits=logits, step0_tokens=step0, truncated=truncated)

    @torch.no_grad()
    def generate(
        self, raw_keyframes: torch.Tensor, prompts: list[str], max_new_tokens: int = 30
    ) -> list[str]:
        """Free-text answers from keyframes (greedy); the official code never exposed this."""
        embeds, mask, _ = self.multi_frame_inputs(raw_keyframes, prompts)
        with self._autocast(self.precision.t5):
            out = self.model.language_model.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                num_beams=1,
                do_sample=False,
            )
        return [s.strip() for s in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    # ------------------------------------------------------------------ training losses
    def _lm_loss(self, embeds: torch.Tensor, mask: torch.Tensor, targets: list[str]) -> torch.Tensor:
        tgt = self.tokenizer(
            targets, padding="longest", truncation=True, max_length=MAX_TEXT_LEN, return_tensors="pt"
        )
        labels = tgt.input_ids.to(self.device).masked_fill(
            tgt.input_ids.to(self.device) == self.ids.pad, -100
        )
        with self._autocast(self.precision.t5):
            out = self.model.language_model(
                inputs_embeds=embeds,
                attention_mask=mask,
                labels=labels,
                decoder_attention_mask=tgt.attention_mask.to(self.device),
            )
        return out.loss

    def localizer_loss(self, raw: torch.Tensor, loc_texts: list[str], labels: list[str]) -> torch.Tensor:
        """T5 LM loss of the localizer on ``yes``/``no`` targets, one per frame of ``(B, T, L, D)``."""
        embeds, mask, _ = self.single_frame_inputs(raw, loc_texts, "localizer")
        return self._lm_loss(embeds, mask, labels)

    def answerer_loss(
        self, raw_keyframes: torch.Tensor, qa_texts: list[str], targets: list[str]
    ) -> torch.Tensor:
        """T5 LM loss of the multi-frame answerer on ``Option X`` targets."""
        embeds, mask, _ = self.multi_frame_inputs(raw_keyframes, qa_texts)
        return self._lm_loss(embeds, mask, targets)

    def token_str(self, token_id: int) -> str:
        """Piece string of a token id (e.g. ``▁Option``)."""
        piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
        return f"<id {int(token_id)}>" if piece is None else str(piece)
