"""The runtime's Localizer scores and Answerer letters against independent computations.

The independent path rebuilds SeViLA's T5 inputs directly from the HF submodules and reads logits the
official way (``generate(..., output_scores=True)``), so a mistake in the runtime's input assembly, prefix
padding, branch choice or decoding rule shows up as a mismatch.
"""

import pytest
import torch

from sevila_tools.errors import ModelLoadError
from sevila_tools.prompts import answerer_prompt, localizer_prompt
from sevila_tools.runtime import FLAN_T5_IDS, TokenIds
from sevila_tools.selectors.base import topk_sorted


def _frames(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 224, 224, 3, dtype=torch.uint8)
    for i in range(n):
        x[i] = torch.randint(0, 255, (3,), generator=g, dtype=torch.uint8)
        r = int(torch.randint(0, 180, (1,), generator=g))
        x[i, r : r + 40, r : r + 40] = 255
    return x


def _independent_queries(m, pixels, branch):
    ln = m.ln_vision_loc if branch == "loc" else m.ln_vision
    qf = m.qformer_loc if branch == "loc" else m.qformer
    qt = m.query_tokens_loc if branch == "loc" else m.query_tokens
    proj = m.language_projection_loc if branch == "loc" else m.language_projection
    # raw ViT output = hidden state of the last encoder layer, before post_layernorm
    out = m.vision_model(pixel_values=pixels, output_hidden_states=True)
    raw = out.hidden_states[-1]
    assert not torch.allclose(raw, out.last_hidden_state)  # post_layernorm must not be applied
    feats = torch.nn.functional.layer_norm(raw, raw.shape[-1:], ln.weight, ln.bias, eps=1e-5)
    q = qf(
        query_embeds=qt.expand(raw.shape[0], -1, -1),
        encoder_hidden_states=feats,
        encoder_attention_mask=torch.ones(feats.shape[:2], dtype=torch.long),
    ).last_hidden_state
    return proj(q[:, :32])


@pytest.fixture(scope="module")
def frames():
    return _frames(6)


def test_localizer_scores_equal_generate_first_step(tiny_runtime, frames):
    rt, m, tok = tiny_runtime, tiny_runtime.model, tiny_runtime.tokenizer
    q, opts = "what is the square doing?", ["moving left.", "moving right."]
    text = localizer_prompt(q, opts)
    yes, no = rt.localizer_logits(rt.vit(frames)[None], [text])
    pixels = rt.pixels(frames)
    with torch.no_grad():
        qe = _independent_queries(m, pixels, "loc")
        emb = m.language_model.shared
        pre = tok("Frame: ", add_special_tokens=False, return_tensors="pt").input_ids
        txt = tok(text, truncation=True, max_length=77, return_tensors="pt").input_ids
        n = qe.shape[0]
        embeds = torch.cat([emb(pre).expand(n, -1, -1), qe, emb(txt).expand(n, -1, -1)], 1)
        out = m.language_model.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
            num_beams=1,
            max_new_tokens=3,
            min_length=1,
            output_scores=True,
            return_dict_in_generate=True,
            do_sample=False,
        )
    ref_yes, ref_no = out.scores[0][:, rt.ids.yes], out.scores[0][:, rt.ids.no]
    torch.testing.assert_close(yes[0], ref_yes, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(no[0], ref_no, atol=1e-4, rtol=1e-5)
    assert yes[0].std() > 0.1  # frames really differ in score


def test_answerer_letters_equal_generate_second_step(tiny_runtime, frames):
    rt, m, tok = tiny_runtime, tiny_runtime.model, tiny_runtime.tokenizer
    opts = ["moving left.", "moving right.", "sitting."]
    text = answerer_prompt("what is the square doing?", opts)
    kf = [1, 3, 4, 5]
    out = rt.answer(rt.vit(frames[kf])[None], [text], 3, "faithful")
    with torch.no_grad():
        qe = _independent_queries(m, rt.pixels(frames[kf]), "ans")
        emb = m.language_model.shared
        prefixes = tok(
            [f"Frame {i + 1}: " for i in range(4)],
            add_special_tokens=False,
            padding="longest",
            return_tensors="pt",
        )
        parts, masks = [], []
        for i in range(4):
            parts += [emb(prefixes.input_ids[i]), qe[i]]
            masks += [prefixes.attention_mask[i], torch.ones(32, dtype=torch.long)]
        txt = tok(text, truncation=True, max_length=77, return_tensors="pt").input_ids[0]
        embeds = torch.cat(parts + [emb(txt)])[None]
        mask = torch.cat(masks + [torch.ones(len(txt), dtype=torch.long)])[None]
        gen = m.language_model.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            num_beams=1,
            max_new_tokens=3,
            min_length=1,
            output_scores=True,
            return_dict_in_generate=True,
        )
    letters = list(rt.ids.letters[:3])
    torch.testing.assert_close(out.letter_logits[0], gen.scores[1][0, letters], atol=1e-4, rtol=1e-5)
    assert out.step0_tokens[0] == int(gen.sequences[0, 1])
    assert out.predictions[0] == int(gen.scores[1][0, letters].argmax())


def test_teacher_forced_reads_position_one_after_option(tiny_runtime, frames):
    rt = tiny_runtime
    text = answerer_prompt("q?", ["a.", "b."])
    raw = rt.vit(frames[:4])[None]
    out = rt.answer(raw, [text], 2, "teacher_forced")
    embeds, mask, _ = rt.multi_frame_inputs(raw, [text])
    with torch.no_grad():
        labels = rt.tokenizer(["Option A"], return_tensors="pt").input_ids  # ▁Option ▁A </s>
        logits = rt.model.language_model(inputs_embeds=embeds, attention_mask=mask, labels=labels).logits
    torch.testing.assert_close(
        out.letter_logits[0], logits[0, 1, list(rt.ids.letters[:2])], atol=1e-4, rtol=1e-5
    )


def test_batched_questions_equal_single(tiny_runtime, frames):
    rt = tiny_runtime
    raw = rt.vit(frames)
    texts = [
        localizer_prompt("short?", ["a.", "b."]),
        localizer_prompt("a much longer question here?", ["x.", "y."]),
    ]
    yes_b, _ = rt.localizer_logits(torch.stack([raw, raw.flip(0)]), texts)
    yes_0, _ = rt.localizer_logits(raw[None], texts[:1])
    yes_1, _ = rt.localizer_logits(raw.flip(0)[None], texts[1:])
    torch.testing.assert_close(yes_b[0], yes_0[0], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(yes_b[1], yes_1[0], atol=1e-4, rtol=1e-5)


def test_branches_are_distinct(tiny_runtime, frames):
    raw = tiny_runtime.vit(frames[:2])
    a = tiny_runtime.model.frame_queries(raw, "answerer")
    b = tiny_runtime.model.frame_queries(raw, "localizer")
    assert not torch.allclose(a, b)


def test_text_truncated_at_77_tokens_keeps_eos_and_is_counted(tiny_runtime, caplog):
    before = tiny_runtime.truncated_texts
    ids, mask, truncated = tiny_runtime.tokenize(["word " * 200, "short"])
    assert ids.shape[1] == 77 and truncated == [True, False]
    assert int(ids[0, -1]) == tiny_runtime.ids.eos
    tiny_runtime.tokenize(["word " * 200])
    assert tiny_runtime.truncated_texts == before + 2
    warnings = [r for r in caplog.records if "truncated" in r.getMessage() and r.levelname == "WARNING"]
    assert len(warnings) == (1 if before == 0 else 0)  # one warning per runtime, whatever the count


def test_token_ids_derived_from_tokenizer(tiny_runtime):
    tok = tiny_runtime.tokenizer
    ids = tiny_runtime.ids
    assert tok.convert_ids_to_tokens([ids.yes, ids.no, ids.option]) == [
        "\u2581yes",
        "\u2581no",
        "\u2581Option",
    ]
    assert tok.convert_ids_to_tokens(list(ids.letters)) == [f"\u2581{c}" for c in "ABCDE"]
    assert ids.yes != FLAN_T5_IDS["yes"]  # tiny ids differ from Flan-T5: nothing is hard-coded


class _FakeFlanTokenizer:
    """Stands in for the real Flan-T5 tokenizer (32100 pieces) with configurable ids."""

    pad_token_id, eos_token_id, unk_token_id = 0, 1, 2

    def __init__(self, table):
        self.table = table

    def __len__(self):
        return 32100

    def __call__(self, word, add_special_tokens=False):
        class _Enc:
            input_ids = [self.table[word]]

        return _Enc()


def test_flan_t5_ids_asserted_when_real_tokenizer_loaded():
    table = {"yes": 4273, "no": 150, "A": 71, "B": 272, "C": 205, "D": 309, "E": 262, "Option": 17942}
    ids = TokenIds.from_tokenizer(_FakeFlanTokenizer(table), 0)
    assert ids.letters == (71, 272, 205, 309, 262)
    with pytest.raises(ModelLoadError, match="expected"):
        TokenIds.from_tokenizer(_FakeFlanTokenizer({**table, "yes": 4274}), 0)


def test_topk_then_time_sort_with_ties_to_lower_index():
    assert topk_sorted([0.1, 0.9, 0.5, 0.9, 0.2], 2) == [1, 3]
    assert topk_sorted([1.0, 1.0, 1.0, 1.0], 2) == [0, 1]
    assert topk_sorted([3.0, 1.0, 2.0, 5.0], 3) == [0, 2, 3]


def test_precision_policy():
    from sevila_tools.runtime import Precision

    cpu = Precision.for_device(torch.device("cpu"))
    gpu = Precision.for_device(torch.device("cuda"))
    assert (cpu.vit, cpu.qformer, cpu.t5) == (torch.float32,) * 3
    assert (gpu.vit, gpu.qformer, gpu.t5) == (torch.float16, torch.float32, torch.bfloat16)
    assert Precision.for_device(torch.device("cuda"), t5="fp32").t5 == torch.float32
