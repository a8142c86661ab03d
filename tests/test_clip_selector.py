"""CLIP similarity selector: tiny random CLIP, synthetic videos, real CLIP BPE tokenizer (shared data)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sevila_tools.errors import InputError, ModelLoadError
from sevila_tools.prompts import answerer_prompt
from sevila_tools.selectors import build_selector, declared_options, options_for
from sevila_tools.selectors.base import REGISTRY, SelectorInput
from sevila_tools.selectors.clip import (
    CLIPSelector,
    build_text,
    build_tiny_clip,
    clip_pixel_values,
    clip_tokenizer_from_bpe,
    embedding_tensor,
    load_clip,
    resize_short_center_crop,
)
from sevila_tools.selectors.memo import FeatureMemo, selector_memo_stats
from sevila_tools.synthetic import make_video
from sevila_tools.video import preprocess, read_frames, sample_frames

QUESTION = "why did the boy run?"
OPTIONS = ["to play.", "to eat.", "he was hungry.", "to look at the dog.", "to sit down."]


@pytest.fixture(scope="module")
def tiny():
    model, tok, cfg = build_tiny_clip(seed=0)
    return model, tok, cfg


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = make_video(
        tmp_path_factory.mktemp("clipvid") / "v.mp4", num_frames=90, fps=30, width=320, height=240
    )
    return path, sample_frames(path, 32)


def _inp(video, question=QUESTION, options=OPTIONS):
    path, cand = video
    return SelectorInput(video=str(path), candidates=cand, question=question, options=list(options))


def _independent_scores(model, tok, pixel_values, text):
    """Normalise + dot product computed directly from the HF model."""
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pixel_values)
        img = img if isinstance(img, torch.Tensor) else img.pooler_output
        enc = tok([text], padding=True, truncation=True, max_length=77, return_tensors="pt")
        txt = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        txt = txt if isinstance(txt, torch.Tensor) else txt.pooler_output
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return (img @ txt[0]).numpy()


def test_registered():
    assert REGISTRY["clip"] is CLIPSelector


@pytest.mark.parametrize("pixels", ["native_crop", "sevila_224"])
def test_select_sorted_in_range_deterministic(tiny, video, pixels):
    model, tok, _ = tiny
    sel = CLIPSelector(model, tok, pixels=pixels)
    a = sel.select(_inp(video), 4)
    b = CLIPSelector(model, tok, pixels=pixels).select(_inp(video), 4)
    cand = video[1]
    assert len(a.frame_indices) == 4
    assert a.frame_indices == sorted(a.frame_indices)
    assert all(0 <= i < cand.num_video_frames for i in a.frame_indices)
    assert set(a.frame_indices) <= set(cand.indices)
    assert a.frame_indices == b.frame_indices and a.candidate_scores == b.candidate_scores
    assert len(a.candidate_scores) == 32
    assert a.selector == "clip" and a.config["pixels"] == pixels and a.extra["pixels"] == pixels
    assert a.extra["text_mode"] == "question_options" and a.extra["truncated"] is False
    # the k best scores, ties -> lower index
    order = sorted(range(32), key=lambda i: (-a.candidate_scores[i], i))[:4]
    assert a.candidate_positions == sorted(order)
    assert [a.candidate_scores[p] for p in a.candidate_positions] == a.scores
    emb = sel.frame_embeddings(_inp(video))
    for k in (1, 7, 32):
        assert len(sel.select_with_embeddings(_inp(video), k, emb).frame_indices) == k


def test_scores_equal_independent_cosine_sevila_224(tiny, video):
    model, tok, _ = tiny
    sel = CLIPSelector(model, tok, pixels="sevila_224").select(_inp(video), 4)
    text = " ".join([QUESTION, *OPTIONS])
    ref = _independent_scores(model, tok, preprocess(video[1].frames).float(), text)
    np.testing.assert_allclose(sel.candidate_scores, ref, atol=1e-5)


def test_scores_equal_independent_cosine_native_crop(tiny, video):
    model, tok, _ = tiny
    path, cand = video
    sel = CLIPSelector(model, tok, pixels="native_crop", text_mode="question_only").select(_inp(video), 4)
    native, _ = read_frames(path, cand.indices, size=None)
    assert native.shape[1:] == (240, 320, 3)
    ref = _independent_scores(model, tok, clip_pixel_values(native), QUESTION)
    np.testing.assert_allclose(sel.candidate_scores, ref, atol=1e-5)


def test_native_crop_matches_hf_clip_image_processor(video):
    from transformers import CLIPImageProcessor

    path, cand = video
    native, _ = read_frames(path, cand.indices[:4], size=None)
    ours = clip_pixel_values(native)
    assert ours.shape == (4, 3, 224, 224)
    hf = CLIPImageProcessor()(images=list(native), return_tensors="pt")["pixel_values"]
    diff = (ours - hf).abs()
    assert float(diff.max()) < 0.06 and float(diff.mean()) < 2e-3


def test_resize_short_center_crop_geometry():
    frames = np.zeros((1, 240, 320, 3), np.uint8)
    frames[0, :, 160:] = 255  # right half white
    out = resize_short_center_crop(frames)
    assert out.shape == (1, 3, 224, 224)
    # 240x320 -> 224x298, crop offset (298 - 224) // 2 = 37: the edge at x=149 lands at 149 - 37 = 112
    row = out[0, 0, 100]
    assert float(row[:105].max()) == 0 and float(row[120:].min()) == 255
    tall = resize_short_center_crop(np.zeros((2, 300, 100, 3), np.uint8), 224)
    assert tall.shape == (2, 3, 224, 224)


def test_embedding_tensor_accepts_both_output_kinds():
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    t = torch.randn(2, 8)
    assert embedding_tensor(t) is t
    assert (
        embedding_tensor(BaseModelOutputWithPooling(last_hidden_state=torch.zeros(2, 3, 8), pooler_output=t))
        is t
    )
    with pytest.raises(TypeError):
        embedding_tensor({"nothing": 1})


def test_text_modes():
    assert build_text("q?", ["a.", "b."], "question_options") == "q? a. b."
    assert build_text("q?", ["a.", "b."], "question_only") == "q?"
    assert build_text("q?", ["a.", "b."], "sevila_prompt") == answerer_prompt("q?", ["a.", "b."])
    with pytest.raises(InputError):
        build_text("q?", [], "nope")


@pytest.mark.parametrize("mode", ["question_options", "sevila_prompt", "question_only"])
def test_text_mode_recorded(tiny, video, mode):
    model, tok, _ = tiny
    s = CLIPSelector(model, tok, text_mode=mode, pixels="sevila_224").select(_inp(video), 4)
    assert s.extra["text_mode"] == mode and s.config["text_mode"] == mode
    assert s.extra["texts"] == [build_text(QUESTION, OPTIONS, mode)]


def test_truncation_logged_and_recorded(tiny, video, caplog):
    model, tok, _ = tiny
    long_q = "why " * 90 + "?"
    sel = CLIPSelector(model, tok, pixels="sevila_224")
    with caplog.at_level(logging.WARNING, logger="sevila_tools.selectors.clip"):
        s = sel.select(_inp(video, question=long_q), 4)
    assert s.extra["truncated"] is True and s.extra["long_text_used"] == "truncate"
    assert s.extra["full_text_tokens"] > 77
    assert [r.getMessage() for r in caplog.records] == [
        f"CLIP reads at most 77 tokens: a text of {s.extra['full_text_tokens']} tokens was cut to fit (shown once; "
        f"each selection records whether its text was cut): {s.extra['texts'][0][:60]}..."]
    # truncation keeps BOS and EOS inside the 77 tokens
    ids = tok(long_q, truncation=True, max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id


def test_truncation_warned_once_and_counted(tiny, video, caplog):
    """A dataset of long questions gives one warning line, not one per question."""
    model, tok, _ = tiny
    sel = CLIPSelector(model, tok, pixels="sevila_224")
    questions = ["why " * 90 + "?", "how " * 90 + "?", "why did the boy run?", "what " * 90 + "?"]
    with caplog.at_level(logging.WARNING, logger="sevila_tools.selectors.clip"):
        cut = [sel.select(_inp(video, question=q), 4).extra["truncated"] for q in questions]
    assert cut == [True, True, False, True] and sel.truncated_texts == 3
    assert len(caplog.records) == 1 and "why why" in caplog.records[0].getMessage()


def test_per_option_mean(tiny, video):
    model, tok, _ = tiny
    question = "what " * 55 + "?"
    options = ["the boy " * 6 + "run.", "the dog " * 6 + "sit."]
    sel = CLIPSelector(model, tok, pixels="sevila_224", long_text="per_option_mean")
    s = sel.select(_inp(video, question=question, options=options), 4)
    assert s.extra["long_text_used"] == "per_option_mean"
    assert s.extra["texts"] == [f"{question} {o}" for o in options]
    with torch.no_grad():
        enc = tok(s.extra["texts"], padding=True, truncation=True, max_length=77, return_tensors="pt")
        txt = embedding_tensor(model.get_text_features(**enc))
        img = embedding_tensor(model.get_image_features(pixel_values=preprocess(video[1].frames).float()))
    txt = F.normalize(F.normalize(txt, dim=-1).mean(0), dim=0)
    ref = (F.normalize(img, dim=-1) @ txt).numpy()
    np.testing.assert_allclose(s.candidate_scores, ref, atol=1e-5)
    # short text: per_option_mean is a fallback only, the text is used unchanged
    short = sel.select(_inp(video), 4)
    assert short.extra["long_text_used"] == "none" and len(short.extra["texts"]) == 1


def test_feature_cache_reused_across_text_modes(tiny, video, monkeypatch):
    model, tok, _ = tiny
    cache: dict = {}
    a = CLIPSelector(model, tok, pixels="sevila_224", feature_cache=cache)
    a.select(_inp(video), 4)
    b = CLIPSelector(model, tok, pixels="sevila_224", text_mode="question_only", feature_cache=cache)
    monkeypatch.setattr(
        b, "candidate_pixels", lambda inp: (_ for _ in ()).throw(AssertionError("recomputed"))
    )
    s = b.select(_inp(video), 4)
    emb = a.frame_embeddings(_inp(video))
    assert s == b.select_with_embeddings(_inp(video), 4, emb)
    assert len(cache) == 1


def test_invalid_arguments(tiny, video):
    model, tok, _ = tiny
    with pytest.raises(InputError):
        CLIPSelector(model, tok, pixels="bogus")
    with pytest.raises(InputError):
        CLIPSelector(model, tok, text_mode="bogus")
    with pytest.raises(InputError):
        CLIPSelector(model, tok, long_text="bogus")
    with pytest.raises(InputError):
        CLIPSelector(model)  # model object without tokenizer
    sel = CLIPSelector(model, tok, pixels="sevila_224")
    with pytest.raises(InputError):
        sel.select(_inp(video), 33)
    with pytest.raises(InputError):
        sel.select(_inp(video, question="  "), 4)


def test_load_clip_unknown_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_clip("no-such-org/no-such-clip-model")
    msg = str(err.value)
    assert "\n" not in msg and "no-such-org/no-such-clip-model" in msg and "offline" in msg
    sel = CLIPSelector("no-such-org/no-such-clip-model")  # lazy: fails on first use only
    with pytest.raises(ModelLoadError):
        _ = sel.model


def test_load_clip_local_folder_roundtrip(tiny, tmp_path):
    model, tok, _ = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok = load_clip(tmp_path)
    assert ltok("why did the dog run?").input_ids == tok("why did the dog run?").input_ids
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    with pytest.raises(ModelLoadError):
        load_clip(tmp_path / "config.json")  # a file, not a folder


def test_real_bpe_tokenizer(real_data):
    tok = clip_tokenizer_from_bpe(real_data / "clip" / "bpe_simple_vocab_16e6.txt.gz")
    assert len(tok) == 49408
    assert tok.bos_token_id == 49406 and tok.eos_token_id == 49407 and tok.pad_token_id == 49407
    assert tok.convert_ids_to_tokens(49406) == "<|startoftext|>"
    assert tok("a photo of a cat!").input_ids == [49406, 320, 1125, 539, 320, 2368, 256, 49407]
    assert tok("A Photo").input_ids == tok("a photo").input_ids  # lower-cases
    long = " ".join(["pizza"] * 120)
    ids = tok(long, truncation=True, max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == 49406 and ids[-1] == 49407
    ids32 = tok(long, truncation=True, max_length=32).input_ids
    assert len(ids32) == 32 and ids32[0] == 49406 and ids32[-1] == 49407
    batch = tok(["a cat", "a photo of a dog"], padding=True)
    assert batch.input_ids[0][-1] == 49407 and batch.attention_mask[0] == [1, 1, 1, 1, 0, 0, 0]


def test_real_bpe_tokenizer_with_tiny_clip_selector(real_bpe_clip, video):
    model, tok = real_bpe_clip
    s = CLIPSelector(model, tok, pixels="sevila_224").select(_inp(video), 4)
    ref = _independent_scores(model, tok, preprocess(video[1].frames).float(), " ".join([QUESTION, *OPTIONS]))
    np.testing.assert_allclose(s.candidate_scores, ref, atol=1e-5)


# ------------------------------------------------------------------------------------------------ plugin contract


def test_options_contract():
    cls = REGISTRY["clip"]
    assert cls.rank == 20 and cls.scores_candidates and not cls.needs_gold
    assert declared_options("clip") == ["clip_model", "text_mode", "long_text", "pixels"]
    shared = {"clip_model": "x", "mdetr_checkpoint": "y", "pixels": "sevila_224", "long_video": "stride"}
    assert options_for("clip", shared) == {"clip_model": "x", "pixels": "sevila_224"}
    with pytest.raises(InputError) as err:
        build_selector("clip", None, mdetr_checkpoint="m.ckpt")
    assert "\n" not in str(err.value) and "mdetr_checkpoint" in str(err.value)
    with pytest.raises(InputError) as err:
        build_selector("clip", None, pixels="bogus")
    assert "\n" not in str(err.value) and "pixels" in str(err.value)
    sel = build_selector("clip", None, text_mode="question_only")  # no runtime: CPU, default CLIP, lazy
    assert sel.model_name == "openai/clip-vit-base-patch32" and sel.text_mode == "question_only"
    assert sel.device == torch.device("cpu")


def test_fingerprint_follows_modes_and_local_weights(tiny, tmp_path):
    base = build_selector("clip", None).fingerprint()
    assert base["selector"] == "clip" and base["model"] == "openai/clip-vit-base-patch32"
    for change in (
        {"pixels": "sevila_224"},
        {"text_mode": "sevila_prompt"},
        {"long_text": "per_option_mean"},
    ):
        assert build_selector("clip", None, **change).fingerprint() != base
    model, tok, _ = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    before = build_selector("clip", None, clip_model=str(tmp_path)).fingerprint()
    assert before["model"]["path"] == str(tmp_path.resolve())
    weights = next(tmp_path.glob("*.safetensors"))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert build_selector("clip", None, clip_model=str(tmp_path)).fingerprint() != before


def test_build_selector_shares_model_and_features(tiny_runtime, video, monkeypatch):
    a = build_selector("clip", tiny_runtime)
    b = build_selector("clip", tiny_runtime, text_mode="question_only")
    assert a.model is b.model and a.model_name == "tiny-random-clip"
    assert a.device == tiny_runtime.device
    first = a.select(_inp(video), 4)
    before = selector_memo_stats()
    monkeypatch.setattr(b, "candidate_pixels", lambda inp: (_ for _ in ()).throw(AssertionError("re-read")))
    second = b.select(_inp(video), 4)
    after = selector_memo_stats()
    assert after["features"]["stores"] == before["features"]["stores"]  # no new image features
    assert after["features"]["hits"] == before["features"]["hits"] + 1
    assert after["model_loads"] == before["model_loads"]
    assert first.candidate_scores != second.candidate_scores  # other text, same frame features
    # the scene selector with the same CLIP and pixels reads the same memoised features
    scene = build_selector("scene", tiny_runtime)
    assert scene.clip.model is a.model
    scene.select(_inp(video), 3)
    assert selector_memo_stats()["features"]["stores"] == before["features"]["stores"]


def test_sevila_prompt_uses_the_pipeline_text(tiny, video):
    model, tok, _ = tiny
    sel = CLIPSelector(model, tok, text_mode="sevila_prompt", pixels="sevila_224")
    inp = _inp(video)
    inp.qa_text = "Question: why did the boy run? Option A: to play. custom instruction"
    assert sel.select(inp, 4).extra["texts"] == [inp.qa_text]
    other = CLIPSelector(model, tok, text_mode="question_only", pixels="sevila_224")
    assert other.select(inp, 4).extra["texts"] == [QUESTION]  # only sevila_prompt reads it


def test_feature_memo_is_a_bounded_lru():
    memo = FeatureMemo(maxsize=2)
    memo["a"] = 1
    memo["b"] = 2
    assert memo["a"] == 1  # "a" becomes the most recently used
    memo["c"] = 3
    assert "b" not in memo and "a" in memo and "c" in memo and len(memo) == 2
    assert memo.stats() == {"entries": 2, "hits": 1, "stores": 3, "evictions": 1, "maxsize": 2}
    with pytest.raises(ValueError):
        FeatureMemo(maxsize=0)
