"""Pre-train the tiny base model (the stand-in for BLIP-2) on the NeedleQA renderer's frame corpus.

ViT, answerer Q-Former and T5 train together from a seeded random start on single frames (multiple-choice
questions in SeViLA's Answerer prompt, yes/no questions, captions) and on a few 4-frame questions; the Localizer
branch is then set to a copy of the answerer Q-Former, as SeViLA starts from BLIP-2's. Writes a model folder
(``sevila convert`` layout: safetensors, config, tokenizer). Run by ``scripts/train_tiny.sh``.

    python scripts/train_tiny_base.py --out runs/tiny/base --steps 700 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from sevila_tools.modeling import SevilaModel, branch_of_key
from sevila_tools.runtime import Precision, SevilaRuntime
from sevila_tools.synth.corpus import attribute_example, multi_example, single_example, text_example
from sevila_tools.synth.vocab import build_tokenizer
from sevila_tools.synth.world import COLOURS, KINDS, PLACES
from sevila_tools.tiny import init_random_


def base_config(vocab_size: int):
    """SeViLA's layout at tiny size: 224 px in patches of 28 (65 ViT tokens), 32 queries, T5 encoder-decoder."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, T5Config

    vision = Blip2VisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                               image_size=224, patch_size=28)
    qformer = Blip2QFormerConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                                 cross_attention_frequency=2, encoder_hidden_size=128, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0)
    text = T5Config(vocab_size=vocab_size, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_decoder_layers=2,
                    num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=32)


def cpu_friendly_attention() -> None:
    """Same ViT attention as transformers' eager one, with contiguous per-head tensors: its backward avoids
    strided matrix products that are many times slower on CPU. Used only while pre-training."""
    from transformers.models.blip_2 import modeling_blip_2 as mb

    def forward(self, hidden_states, **_):
        b, t, d = hidden_states.shape
        h = self.num_heads
        q, k, v = (x.reshape(b, t, h, d // h).transpose(1, 2).reshape(b * h, t, d // h).contiguous()
                   for x in self.qkv(hidden_states).split(d, dim=-1))
        w = torch.softmax(torch.bmm(q * self.scale, k.transpose(1, 2)), dim=-1)
        out = torch.bmm(w, v).reshape(b, h, t, d // h).transpose(1, 2).reshape(b, t, d)
        return self.projection(out), None

    mb.Blip2Attention.forward = forward


class Stream(torch.utils.data.IterableDataset):
    """Step ``s`` of a phase draws its examples from ``default_rng([seed, phase, s])`` (in a worker process)."""

    def __init__(self, make, seed: int, phase: int, steps: int) -> None:
        self.make, self.seed, self.phase, self.steps = make, seed, phase, steps

    def __iter__(self):
        for step in range(self.steps):
            yield self.make(np.random.default_rng([self.seed, self.phase, step]))


def loader(make, seed: int, phase: int, steps: int):
    return torch.utils.data.DataLoader(Stream(make, seed, phase, steps), batch_size=None, num_workers=1,
                                       prefetch_factor=4)


def optimizer(groups: list[tuple[list[torch.nn.Parameter], float]]) -> torch.optim.AdamW:
    return torch.optim.AdamW([{"params": p, "lr": lr, "peak": lr} for p, lr in groups], weight_decay=0.01)


def step_opt(opt: torch.optim.AdamW, loss: torch.Tensor, step: int, steps: int) -> None:
    """Warm-up (30 steps) then cosine to a tenth of each group's peak; gradients clipped at 1."""
    for g in opt.param_groups:
        g["lr"] = lr_at(step, steps, g["peak"], 30)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    opt.step()


# ----------------------------------------------------------------------------------------------- phase A: text
def text_batch(rng: np.random.Generator, n: int = 64) -> list:
    return [text_example(rng) for _ in range(n)]


def text_loss(rt: SevilaRuntime, batch: list) -> torch.Tensor:
    """T5 alone on ``Frame: <words> <prompt>`` -> target (the frame described in words)."""
    enc = rt.tokenizer([e.text for e in batch], padding="longest", truncation=True, max_length=160,
                       return_tensors="pt")
    embeds = rt.model.embed_tokens(enc.input_ids)
    return rt._lm_loss(embeds, enc.attention_mask, [e.target for e in batch])


@torch.no_grad()
def text_accuracy(rt: SevilaRuntime, seed: int, n: int = 200) -> float:
    """Held-out accuracy of the text-only multiple-choice examples (teacher-forced ``Option``, letter logits)."""
    rng = np.random.default_rng([seed, 10**9, 1])
    batch = [e for e in (text_example(rng) for _ in range(n)) if e.target.startswith("Option")]
    enc = rt.tokenizer([e.text for e in batch], padding="longest", return_tensors="pt")
    dec = torch.tensor([[rt.ids.decoder_start, rt.ids.option]] * len(batch))
    rt.model.eval()
    logits = rt.model.language_model(inputs_embeds=rt.model.embed_tokens(enc.input_ids),
                                     attention_mask=enc.attention_mask, decoder_input_ids=dec).logits
    pred = logits[:, 1, list(rt.ids.letters)].argmax(-1).tolist()
    return round(float(np.mean([p == _letter(e.target) for p, e in zip(pred, batch, strict=True)])), 3)


def phase_text(rt: SevilaRuntime, seed: int, steps: int, lr: float, say) -> None:
    t5 = list(rt.model.language_model.parameters())
    opt = optimizer([(t5, lr)])
    for step, batch in enumerate(loader(text_batch, seed, 1, steps)):
        rt.model.language_model.train()
        loss = text_loss(rt, batch)
        step_opt(opt, loss, step, steps)
        if (step + 1) % 25 == 0:
            say({"phase": "text", "step": step + 1, "loss": round(loss.item(), 4)})
        if (step + 1) % 100 == 0 or step + 1 == steps:
            say({"phase": "text", "step": step + 1, "choice": text_accuracy(rt, seed)})


# ------------------------------------------------------------------------------------- phase B: ViT attributes
class AttributeHeads(torch.nn.Module):
    """Colour and shape at each place from the ViT patch tokens pooled around it (discarded afterwards)."""

    def __init__(self, width: int, grid: int) -> None:
        super().__init__()
        ys, xs = np.mgrid[0:grid, 0:grid] + 0.5
        w = np.stack([np.exp(-((xs - px * grid) ** 2 + (ys - py * grid) ** 2) / 2.0).ravel()
                      for px, py in PLACES.values()])
        self.register_buffer("pool", torch.tensor(w / w.sum(1, keepdims=True), dtype=torch.float32))
        self.norm = torch.nn.LayerNorm(width)
        self.colour = torch.nn.Linear(width, len(COLOURS) + 1)
        self.kind = torch.nn.Linear(width, len(KINDS) + 1)

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.norm(torch.einsum("pn,bnd->bpd", self.pool, raw[:, 1:]))
        return self.colour(pooled), self.kind(pooled)


def attribute_batch(rng: np.random.Generator, n: int = 64):
    pairs = [attribute_example(rng) for _ in range(n)]
    return np.stack([f for f, _ in pairs]), torch.tensor(np.stack([lab for _, lab in pairs]))


def phase_vision(rt: SevilaRuntime, seed: int, steps: int, lr: float, say) -> None:
    """The ViT learns what is where: heads on its patch tokens pooled at each place (the stand-in for the ViT's
    own CLIP pre-training; the heads are discarded)."""
    m, cfg = rt.model, rt.model.config.vision_config
    heads = AttributeHeads(cfg.hidden_size, cfg.image_size // cfg.patch_size)
    opt = optimizer([(list(m.vision_model.parameters()) + list(heads.parameters()), lr)])
    ce = torch.nn.functional.cross_entropy
    for step, (frames, labels) in enumerate(loader(attribute_batch, seed, 2, steps)):
        m.vision_model.train()
        colour, kind = heads(rt.vit(frames, grad=True))
        loss = ce(colour.flatten(0, 1), labels[..., 0].flatten()) + ce(kind.flatten(0, 1), labels[..., 1].flatten())
        step_opt(opt, loss, step, steps)
        if (step + 1) % 25 == 0:
            row = {"phase": "vision", "step": step + 1, "loss": round(loss.item(), 4)}
            for name, logits, label in (("colour", colour, labels[..., 0]), ("kind", kind, labels[..., 1])):
                row[f"{name}_acc"] = round((logits.argmax(-1) == label)[label > 0].float().mean().item(), 3)
            say(row)


# ---------------------------------------------------------------------------------- phase C: frames and text
def frame_batch(rng: np.random.Generator, single: int = 24, multi: int = 12, text: int = 32):
    return ([single_example(rng) for _ in range(single)], [multi_example(rng) for _ in range(multi)],
            text_batch(rng, text))


def phase_joint(rt: SevilaRuntime, seed: int, steps: int, lr: float, say) -> None:
    m = rt.model
    branch = [p for n, p in m.named_parameters() if branch_of_key(n) == "answerer"]
    opt = optimizer([(branch, lr), (list(m.vision_model.parameters()), lr / 4),
                     (list(m.language_model.parameters()), lr / 4)])
    for step, (single, multi, text) in enumerate(loader(frame_batch, seed, 3, steps)):
        m.train()
        l1, l2 = loss_of(rt, single, multi)
        l3 = text_loss(rt, text)
        step_opt(opt, (l1 + l2 + 0.5 * l3) / 2.5, step, steps)
        if (step + 1) % 10 == 0:
            say({"phase": "joint", "step": step + 1, "single": round(l1.item(), 4), "multi": round(l2.item(), 4),
                 "text": round(l3.item(), 4)})
        if (step + 1) % 100 == 0 or step + 1 == steps:
            say({"phase": "joint", "step": step + 1, **evaluate(rt, seed)})


def loss_of(rt: SevilaRuntime, single, multi) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 losses of the single-frame (``Frame: `` layout) and the 4-frame (``Frame i: ``) examples."""
    raw = rt.vit(np.concatenate([e.frames for e in single]), grad=True)
    embeds, mask, _ = rt.single_frame_inputs(raw[:, None], [e.text for e in single], "answerer")
    l1 = rt._lm_loss(embeds, mask, [e.target for e in single])
    frames = np.concatenate([e.frames for e in multi])
    raw4 = rt.vit(frames, grad=True).view(len(multi), multi[0].frames.shape[0], *raw.shape[1:])
    l2 = rt.answerer_loss(raw4, [e.text for e in multi], [e.target for e in multi])
    return l1, l2


def _letter(target: str) -> int:
    return "ABCDE".index(target[-1])


@torch.no_grad()
def evaluate(rt: SevilaRuntime, seed: int, n: int = 160) -> dict[str, float]:
    """Held-out accuracy (a seed the training never draws): single-frame choice (faithful decoding), yes/no
    (yes logit above no logit), 4-frame choice."""
    rng = np.random.default_rng([seed, 10**9])
    ex = [single_example(rng) for _ in range(n)]
    rt.model.eval()
    choice = [e for e in ex if e.kind == "choice"]
    raw = rt.vit(np.concatenate([e.frames for e in choice]))[:, None]
    got = rt.frame_answers(raw, [e.text for e in choice], 5, "faithful").predictions
    out = {"choice": float(np.mean([g == _letter(e.target) for g, e in zip(got, choice, strict=True)]))}
    yes_no = [e for e in ex if e.kind == "yes_no"]
    raw = rt.vit(np.concatenate([e.frames for e in yes_no]))[:, None]
    emb, mask, _ = rt.single_frame_inputs(raw, [e.text for e in yes_no], "answerer")
    logits = rt._first_step_logits(emb, mask, [rt.ids.yes, rt.ids.no]).tolist()
    out["yes_no"] = float(np.mean([(a > b) == (e.target == "yes") for (a, b), e in zip(logits, yes_no, strict=True)]))
    mx = [multi_example(rng) for _ in range(40)]
    raw = rt.vit(np.concatenate([e.frames for e in mx]))
    got = rt.answer(raw.view(len(mx), 4, *raw.shape[1:]), [e.text for e in mx], 5, "faithful").predictions
    out["multi_choice"] = float(np.mean([g == _letter(e.target) for g, e in zip(got, mx, strict=True)]))
    return {k: round(v, 3) for k, v in out.items()}


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.1 * peak + 0.9 * peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-steps", type=int, default=400)
    ap.add_argument("--vit-steps", type=int, default=200)
    ap.add_argument("--joint-steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_flush_denormal(True)  # tiny gradients otherwise turn into denormals and slow matmuls ~50x
    cpu_friendly_attention()
    torch.manual_seed(args.seed)
    tok = build_tokenizer()
    model = SevilaModel(base_config(len(tok)))
    init_random_(model)
    with torch.no_grad():  # T5's own init draws lm_head ~ N(0, 1): initial logits ~ 10 and a slow start
        model.language_model.lm_head.weight.normal_(std=model.config.text_config.d_model ** -0.5)
    rt = SevilaRuntime(model=model, tokenizer=tok, device=torch.device("cpu"), precision=Precision())
    model.freeze(("answerer",))
    for p in [*model.vision_model.parameters(), *model.language_model.parameters()]:
        p.requires_grad_(True)
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = open(args.out / "pretrain_log.jsonl", "w")  # noqa: SIM115 - kept open for the whole run
    t0 = time.perf_counter()

    def say(row: dict) -> None:
        row = {**row, "s": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)
        log_file.write(json.dumps(row) + "\n")

    for name, phase, steps, lr in (("text", phase_text, args.text_steps, args.lr),
                                   ("vision", phase_vision, args.vit_steps, args.lr),
                                   ("joint", phase_joint, args.joint_steps, args.lr)):
        start = time.perf_counter()
        if steps:
            phase(rt, args.seed, steps, lr, say)
        say({"phase": name, "done": True, "phase_s": round(time.perf_counter() - start, 1)})
    model.eval()
    model.copy_answerer_to_localizer()
    torch.save(model.state_dict(), args.out / "base_state.pt")
    log_file.close()


if __name__ == "__main__":
    main()
