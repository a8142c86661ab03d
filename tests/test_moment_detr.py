"""Moment-DETR (CLIP-only) re-implementation: layout, loading, features, post-processing, frame strategies."""

from __future__ import annotations

import argparse
import json
import math
import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sevila_tools.errors import CheckpointError, InputError
from sevila_tools.selectors import build_selector, declared_options
from sevila_tools.selectors.base import REGISTRY, SelectorInput
from sevila_tools.selectors.clip import build_tiny_clip
from sevila_tools.selectors.memo import selector_memo_stats
from sevila_tools.selectors.moment_detr import (
    DEFAULT_LONG_VIDEO,
    MomentDETRSelector,
    PositionEmbeddingSine,
    build_moment_detr,
    build_tiny_moment_detr,
    clip_grid,
    frames_top_window_uniform,
    frames_topk_saliency,
    load_moment_detr,
    postprocess,
    run_moment_detr,
    save_moment_detr,
    snap_to_candidates,
    tef,
)
from sevila_tools.synthetic import make_video
from sevila_tools.video import SampledFrames, sample_frames, sample_indices

# the official checkpoint layout (docs/selectors.md): (key pattern, shape); encoder/decoder layers 0 and 1
_ATTN = [
    ("in_proj_weight", (768, 256)),
    ("in_proj_bias", (768,)),
    ("out_proj.weight", (256, 256)),
    ("out_proj.bias", (256,)),
]
_FFN = [
    ("linear1.weight", (1024, 256)),
    ("linear1.bias", (1024,)),
    ("linear2.weight", (256, 1024)),
    ("linear2.bias", (256,)),
]


def _expected_layout() -> dict[str, tuple[int, ...]]:
    exp: dict[str, tuple[int, ...]] = {}
    for e in (0, 1):
        pre = f"transformer.encoder.layers.{e}."
        exp.update({pre + "self_attn." + k: s for k, s in _ATTN})
        exp.update({pre + k: s for k, s in _FFN})
        exp.update({pre + f"{n}.{p}": (256,) for n in ("norm1", "norm2") for p in ("weight", "bias")})
    for d in (0, 1):
        pre = f"transformer.decoder.layers.{d}."
        exp.update({pre + "self_attn." + k: s for k, s in _ATTN})
        exp.update({pre + "multihead_attn." + k: s for k, s in _ATTN})
        exp.update({pre + k: s for k, s in _FFN})
        exp.update(
            {pre + f"{n}.{p}": (256,) for n in ("norm1", "norm2", "norm3") for p in ("weight", "bias")}
        )
    exp.update({"transformer.decoder.norm.weight": (256,), "transformer.decoder.norm.bias": (256,)})
    exp.update(
        {
            "txt_position_embed.position_embeddings.weight": (32, 256),
            "txt_position_embed.LayerNorm.weight": (256,),
            "txt_position_embed.LayerNorm.bias": (256,),
            "span_embed.layers.0.weight": (256, 256),
            "span_embed.layers.0.bias": (256,),
            "span_embed.layers.1.weight": (256, 256),
            "span_embed.layers.1.bias": (256,),
            "span_embed.layers.2.weight": (2, 256),
            "span_embed.layers.2.bias": (2,),
            "class_embed.weight": (2, 256),
            "class_embed.bias": (2,),
            "query_embed.weight": (10, 256),
            "saliency_proj.weight": (1, 256),
            "saliency_proj.bias": (1,),
        }
    )
    for mod, din in (("input_txt_proj", 512), ("input_vid_proj", 514)):
        exp.update(
            {
                f"{mod}.0.LayerNorm.weight": (din,),
                f"{mod}.0.LayerNorm.bias": (din,),
                f"{mod}.0.net.1.weight": (256, din),
                f"{mod}.0.net.1.bias": (256,),
                f"{mod}.1.LayerNorm.weight": (256,),
                f"{mod}.1.LayerNorm.bias": (256,),
                f"{mod}.1.net.1.weight": (256, 256),
                f"{mod}.1.net.1.bias": (256,),
            }
        )
    return exp


@pytest.fixture(scope="module")
def opt(real_data) -> dict:
    return json.loads((real_data / "moment_detr" / "opt.json").read_text())


@pytest.fixture(scope="module")
def full_model(opt):
    torch.manual_seed(0)
    return build_moment_detr(opt)


@pytest.fixture(scope="module")
def full_ckpt(full_model, opt, tmp_path_factory):
    """A random full-size checkpoint saved like the official one but with a plain-dict ``opt``."""
    path = tmp_path_factory.mktemp("mdetr") / "model_best.ckpt"
    torch.save({"model": full_model.state_dict(), "opt": opt, "epoch": 3}, path)
    return path


@pytest.fixture(scope="module")
def tiny():
    clip, tok, _ = build_tiny_clip(seed=0)
    mdetr = build_tiny_moment_detr(clip.config.projection_dim, clip.config.text_config.hidden_size, seed=0)
    return clip, tok, mdetr


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = make_video(
        tmp_path_factory.mktemp("mdvid") / "v.mp4", num_frames=300, fps=30, width=320, height=240
    )
    return path, sample_frames(path, 32)


def _inp(video, question="why did the boy run?", options=("to play.", "to eat.")):
    path, cand = video
    return SelectorInput(video=str(path), candidates=cand, question=question, options=list(options))


# ------------------------------------------------------------------------------------------------ layout


def test_full_size_layout_matches_official_checkpoint(full_model, opt):
    assert opt["v_feat_dim"] == 512 and opt["ctx_mode"] == "video_tef"
    sd = full_model.state_dict()
    expected = _expected_layout()
    assert len(expected) == 92
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert sum(v.numel() for v in sd.values()) == 4_228_873
    assert sum(p.numel() for p in full_model.parameters()) == 4_228_873
    assert len(list(full_model.buffers())) == 0
    assert full_model.vid_dim == 514 and full_model.txt_dim == 512
    assert full_model.opt["vid_dim"] == 514


def test_namespace_opt_already_includes_tef(opt):
    ns = argparse.Namespace(**{**opt, "v_feat_dim": 514, "use_tef": True, "device": torch.device("cpu")})
    assert build_moment_detr(ns).vid_dim == 514
    assert build_moment_detr({**opt, "ctx_mode": "video"}).vid_dim == 512


def test_forward_shapes(full_model):
    torch.manual_seed(1)
    with torch.no_grad():
        out = full_model(
            torch.randn(2, 12, 512), torch.ones(2, 12), torch.randn(2, 40, 514), torch.ones(2, 40)
        )
    assert out["pred_logits"].shape == (2, 10, 2)
    assert out["pred_spans"].shape == (2, 10, 2)
    assert float(out["pred_spans"].min()) >= 0 and float(out["pred_spans"].max()) <= 1
    assert out["saliency_scores"].shape == (2, 40)
    assert len(out["aux_outputs"]) == 1 and out["aux_outputs"][0]["pred_logits"].shape == (2, 10, 2)


def test_text_padding_is_masked(full_model):
    torch.manual_seed(2)
    txt, vid = torch.randn(1, 8, 512), torch.randn(1, 20, 514)
    padded = torch.cat([txt, torch.randn(1, 5, 512)], dim=1)
    mask = torch.cat([torch.ones(1, 8), torch.zeros(1, 5)], dim=1)
    with torch.no_grad():
        a = full_model(txt, torch.ones(1, 8), vid, torch.ones(1, 20))
        b = full_model(padded, mask, vid, torch.ones(1, 20))
    torch.testing.assert_close(a["pred_logits"], b["pred_logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a["saliency_scores"], b["saliency_scores"], atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ loading


def test_saved_checkpoint_loads_strictly(full_model, full_ckpt):
    loaded = load_moment_detr(full_ckpt)  # weights_only=True works: opt is a plain dict
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    torch.manual_seed(3)
    args = (torch.randn(1, 6, 512), torch.ones(1, 6), torch.randn(1, 9, 514), torch.ones(1, 9))
    with torch.no_grad():
        torch.testing.assert_close(full_model(*args)["pred_spans"], loaded(*args)["pred_spans"])


@pytest.mark.parametrize(
    "edit, name",
    [
        ("drop", "class_embed.bias"),
        ("drop", "transformer.decoder.layers.1.norm3.weight"),
        ("extra", "contrastive_align_projection_query.weight"),
        ("shape", "input_vid_proj.0.net.1.weight"),
    ],
)
def test_wrong_keys_are_named(full_model, opt, tmp_path, edit, name):
    sd = dict(full_model.state_dict())
    if edit == "drop":
        del sd[name]
    elif edit == "extra":
        sd[name] = torch.zeros(64, 256)
    else:
        sd[name] = torch.zeros(256, 512)
    path = tmp_path / "bad.ckpt"
    torch.save({"model": sd, "opt": opt}, path)
    with pytest.raises(CheckpointError) as err:
        load_moment_detr(path)
    msg = str(err.value)
    assert name in msg and "\n" not in msg
    kind = {"drop": "missing keys", "extra": "unexpected keys", "shape": "shape mismatch"}[edit]
    assert kind in msg


def test_pickled_namespace_needs_trust(full_model, opt, tmp_path):
    ns = argparse.Namespace(**{**opt, "v_feat_dim": 514, "use_tef": True, "device": torch.device("cpu")})
    path = tmp_path / "official_like.ckpt"
    torch.save({"model": full_model.state_dict(), "opt": ns, "epoch": 1}, path)
    with pytest.raises(CheckpointError) as err:
        load_moment_detr(path)
    msg = str(err.value)
    assert "\n" not in msg and "trusted=True" in msg and "--trust-checkpoint" in msg
    with pytest.warns(UserWarning, match="weights_only=False"):
        model = load_moment_detr(path, trusted=True)
    assert model.vid_dim == 514  # Namespace v_feat_dim already includes the TEF
    assert torch.equal(
        model.state_dict()["query_embed.weight"], full_model.state_dict()["query_embed.weight"]
    )


def test_safetensors_with_opt_json(tiny, tmp_path):
    _, _, mdetr = tiny
    path = save_moment_detr(mdetr, tmp_path / "tiny.safetensors")
    saved_opt = json.loads((tmp_path / "opt.json").read_text())
    assert saved_opt["v_feat_dim"] == mdetr.vid_dim - 2  # opt.json convention: before the TEF
    loaded = load_moment_detr(path)
    for k, v in mdetr.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    (tmp_path / "opt.json").unlink()
    loaded = load_moment_detr(path, opt={**saved_opt})  # explicit options
    assert loaded.vid_dim == mdetr.vid_dim


def test_missing_checkpoint_and_selector_needs_path(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_moment_detr(tmp_path / "nope.ckpt")
    with pytest.raises(InputError, match="checkpoint"):
        MomentDETRSelector()
    with pytest.raises(CheckpointError):
        MomentDETRSelector(tmp_path / "nope.ckpt")


# ------------------------------------------------------------------------------------------------ features


def test_tef_values():
    t = tef(4)
    np.testing.assert_allclose(t.numpy(), [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1.0]])
    assert tef(75).shape == (75, 2) and float(tef(75)[-1, 1]) == pytest.approx(1.0)


def test_sine_position_encoding_formula():
    pe = PositionEmbeddingSine(256, normalize=True)
    length = 7
    out = pe(torch.zeros(1, length, 256), torch.ones(1, length))
    assert out.shape == (1, length, 256)
    ref = np.zeros((length, 256))
    for t in range(length):
        x = (t + 1) / (length + 1e-6) * 2 * math.pi
        for i in range(256):
            p = x / 10000 ** (2 * (i // 2) / 256)
            ref[t, i] = math.sin(p) if i % 2 == 0 else math.cos(p)
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-5)


def test_clip_grid():
    g = clip_grid(0, 300, 30.0)  # 10 s -> 5 clips, last frame before each centre (1, 3, 5, 7, 9 s)
    assert g.frame_indices == [29, 89, 149, 209, 269] and g.clip_len == 2.0 and g.num_clips == 5
    assert clip_grid(0, 61 * 30, 30.0).num_clips == 31
    assert clip_grid(0, 150 * 30, 30.0).num_clips == 75
    short = clip_grid(0, 45, 30.0)  # 1.5 s: ffmpeg fps = 2 / max(int(1.5), 1) = 2 -> 0.5-s clips
    assert short.clip_len == 0.5 and short.num_clips == 3 and short.frame_indices == [7, 22, 37]
    seg = clip_grid(600, 900, 30.0)  # a [20 s, 30 s) segment
    assert seg.frame_indices == [629, 689, 749, 809, 869]
    with pytest.raises(InputError):
        clip_grid(10, 10, 30.0)


def test_query_features_real_bpe_32_token_rule(real_bpe_clip):
    clip, tok = real_bpe_clip
    mdetr = build_tiny_moment_detr(16, 32)
    sel = MomentDETRSelector(model=mdetr, clip_model=clip, clip_tokenizer=tok)
    long_q = "why does the chef " + "cut the pizza " * 20 + "?"
    feats, info = sel.query_features(long_q)
    assert feats.shape == (32, 32) and info["query_tokens"] == 32 and info["query_truncated"] is True
    ids = tok(long_q, truncation=True, max_length=32).input_ids
    assert ids[0] == 49406 and ids[-1] == 49407 and len(ids) == 32
    with torch.no_grad():
        hidden = clip.text_model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    torch.testing.assert_close(feats, hidden / hidden.norm(dim=-1, keepdim=True), atol=1e-5, rtol=1e-5)
    short, info = sel.query_features("Chef makes pizza and cuts it up.")
    assert short.shape[0] == len(tok("Chef makes pizza and cuts it up.").input_ids) == info["query_tokens"]
    assert info["query_truncated"] is False
    torch.testing.assert_close(short.norm(dim=-1), torch.ones(short.shape[0]))


# ------------------------------------------------------------------------------------------------ outputs


def _outputs(logits, spans, saliency):
    return {
        "pred_logits": torch.tensor([logits], dtype=torch.float32),
        "pred_spans": torch.tensor([spans], dtype=torch.float32),
        "saliency_scores": torch.tensor([saliency], dtype=torch.float32),
    }


def test_postprocess_constructed_outputs():
    logits = [[0.0, 0.0], [2.0, 0.0], [-1.0, 1.0]]  # foreground = class 0
    spans = [[0.5, 0.2], [0.1, 0.4], [0.95, 0.3]]
    out = _outputs(logits, spans, [-0.123456, 0.5, 2.0, 9.0])
    windows, sal = postprocess(out, span_duration=20.0, num_valid=3)
    p = [0.5, 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(2.0))]
    assert [w[2] for w in windows] == [round(p[1], 4), round(p[0], 4), round(p[2], 4)]  # sorted by score
    assert windows[0][:2] == [-2.0, 6.0]  # (0.1 -/+ 0.2) * 20, not clamped
    assert windows[1][:2] == [8.0, 12.0]
    assert windows[2][:2] == [16.0, 22.0]  # beyond the duration, not clamped
    assert sal == [-0.1235, 0.5, 2.0]  # fp16 then 4 decimals
    _, sal = postprocess(_outputs(logits, spans, [0.33333]), span_duration=20.0)
    assert sal == [round(float(torch.tensor(0.33333).half()), 4)] == [0.3333]
    shifted, _ = postprocess(out, span_duration=20.0, offset=100.0)
    assert shifted[1][:2] == [108.0, 112.0]


def test_top_window_uniform():
    windows = [[2.0, 4.0, 0.9], [0.0, 9.0, 0.5]]
    frames, info = frames_top_window_uniform(
        windows, 4, fps=30.0, start_frame=0, end_frame=300, duration=10.0
    )
    assert frames == [67, 82, 97, 112]  # midpoints of linspace(60, 120, 5)
    assert info["window_rank"] == 0 and info["padded"] is False and info["fallback"] is None
    # segment offset: frames are native indices
    frames, _ = frames_top_window_uniform(windows, 4, fps=30.0, start_frame=600, end_frame=900, duration=10.0)
    assert frames == [667, 682, 697, 712]
    # window narrower than k frames -> repeat the last index and flag
    frames, info = frames_top_window_uniform([[1.0, 1.05, 0.8]], 4, 30.0, 0, 300, 10.0)
    assert frames == [30, 31, 31, 31] and info["padded"] is True
    # clamped to [0, duration]; empty windows fall back to the next
    frames, info = frames_top_window_uniform([[-5.0, -1.0, 0.99], [8.0, 14.0, 0.7]], 2, 30.0, 0, 300, 10.0)
    assert info["skipped"] == 1 and info["window"] == [8.0, 10.0, 0.7]
    assert frames == [255, 285] and all(f < 300 for f in frames)  # linspace(240, 300, 3)
    frames, info = frames_top_window_uniform([[-5.0, -1.0, 0.99]], 4, 30.0, 0, 300, 10.0)
    assert info["fallback"] == "whole_segment" and frames == [37, 112, 187, 262]


def test_topk_saliency():
    centres = [1.0, 3.0, 5.0, 7.0, 9.0]
    sal = [0.1, 0.5, 0.5, -1.0, 0.3]
    frames, scores, info = frames_topk_saliency(
        sal, centres, 3, fps=10.0, start_frame=0, end_frame=100, duration=10.0
    )
    assert frames == [30, 50, 90] and scores == [0.5, 0.5, 0.3] and info["clips"] == [1, 2, 4]
    frames, _, info = frames_topk_saliency(sal, centres, 2, 10.0, 0, 100, 10.0)
    assert info["clips"] == [1, 2]  # tie -> lower clip index
    # clip 4 starts at 8 s, past an 8-s segment: excluded
    frames, _, info = frames_topk_saliency(sal, centres, 3, 10.0, 0, 80, 8.0)
    assert info["clips"] == [0, 1, 2] and frames == [10, 30, 50]
    # centre beyond the last frame is clamped
    frames, _, _ = frames_topk_saliency([1.0], [1.0], 1, 10.0, 0, 15, 1.5)
    assert frames == [10]
    frames, _, _ = frames_topk_saliency([0.0, 1.0], [1.0, 3.0], 1, 10.0, 0, 35, 3.5)
    assert frames == [30]
    # fewer clips than k -> all of them, padded by repetition
    frames, _, info = frames_topk_saliency([0.2, 0.1], [1.0, 3.0], 4, 10.0, 0, 40, 4.0)
    assert frames == [10, 30, 30, 30] and info["padded"] is True


def test_snap_to_candidates():
    cands = [5, 15, 25, 35]
    frames, pos, src = snap_to_candidates([14, 16, 17, 40], cands)
    assert frames == [5, 15, 25, 35] and pos == [0, 1, 2, 3]
    assert sorted(src) == [0, 1, 2, 3]
    frames, pos, _ = snap_to_candidates([10], cands)  # tie -> earlier candidate
    assert frames == [5] and pos == [0]


# ------------------------------------------------------------------------------------------------ long videos


def _features(t, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(t, d, generator=g), dim=-1)


def test_long_video_rules(tiny):
    _, _, mdetr = tiny
    vid, q = _features(100, mdetr.vid_dim - 2), _features(9, mdetr.txt_dim, seed=1)
    assert DEFAULT_LONG_VIDEO == "refuse"  # the library default; evaluation runs choose a rule explicitly
    with pytest.raises(InputError) as err:
        run_moment_detr(mdetr, vid, q, long_video="refuse")
    assert "\n" not in str(err.value) and "sliding" in str(err.value) and "100 clips" in str(err.value)

    stride = run_moment_detr(mdetr, vid, q, long_video="stride")
    assert stride.applied == "stride" and stride.num_clips == 100
    assert len(stride.saliency) == 75 and len(stride.clip_ids) == 75
    assert (
        stride.clip_ids == sorted(stride.clip_ids) and stride.clip_ids[0] == 0 and stride.clip_ids[-1] == 99
    )
    assert stride.clip_centres[1] == (stride.clip_ids[1] + 0.5) * 2
    assert len(stride.windows) == 10

    sliding = run_moment_detr(mdetr, vid, q, long_video="sliding")
    assert sliding.applied == "sliding" and len(sliding.saliency) == 100
    assert [r["offset_s"] for r in sliding.raw] == [0.0, 50.0]  # chunks [0, 75) and [25, 100) clips
    assert len(sliding.windows) == 20
    assert [w[2] for w in sliding.windows] == sorted((w[2] for w in sliding.windows), reverse=True)
    first = run_moment_detr(mdetr, vid[:75], q)
    assert sliding.saliency[:25] == first.saliency[:25]
    assert all(w in sliding.windows for w in first.windows)


def test_short_video_identical_in_every_mode(tiny):
    _, _, mdetr = tiny
    vid, q = _features(40, mdetr.vid_dim - 2), _features(7, mdetr.txt_dim, seed=1)
    preds = [run_moment_detr(mdetr, vid, q, long_video=m) for m in ("refuse", "stride", "sliding")]
    assert all(p.windows == preds[0].windows and p.saliency == preds[0].saliency for p in preds)
    assert preds[0].applied == "none"
    # equals a direct forward with the TEF appended by hand
    with torch.no_grad():
        out = mdetr(q[None], torch.ones(1, 7), torch.cat([vid, tef(40)], 1)[None], torch.ones(1, 40))
    windows, sal = postprocess(out, 80.0, num_valid=40)
    assert windows == preds[0].windows and sal == preds[0].saliency


def test_selector_long_segment_uses_documented_rule(tiny, monkeypatch):
    clip, tok, mdetr = tiny
    nvf, fps = 6000, 30.0  # 200 s
    idx, edges, _ = sample_indices(nvf, 32, fps)
    cand = SampledFrames(
        frames=np.zeros((32, 224, 224, 3), np.uint8),
        indices=idx,
        timestamps=[i / fps for i in idx],
        edges=edges,
        fps=fps,
        num_video_frames=nvf,
        padded=False,
        decoder="pyav",
    )
    inp = SelectorInput(video="unused.mp4", candidates=cand, question="why did the boy run?")
    feats = _features(100, mdetr.vid_dim - 2)
    for rule in ("refuse", "stride", "sliding"):
        sel = MomentDETRSelector(model=mdetr, clip_model=clip, clip_tokenizer=tok, long_video=rule)
        grid = sel.segment_grid(inp)
        assert grid.num_clips == 100
        monkeypatch.setattr(sel, "video_features", lambda inp, g=grid: (feats, g))
        if rule == "refuse":
            with pytest.raises(InputError):
                sel.select(inp, 4)
            continue
        s = sel.select(inp, 4)
        assert s.extra["long_video"] == rule and s.extra["long_video_applied"] == rule
        assert s.extra["num_clips"] == 100
        assert s.frame_indices == sorted(s.frame_indices) and all(0 <= f < nvf for f in s.frame_indices)


# ------------------------------------------------------------------------------------------------ selector


def test_registered():
    assert REGISTRY["moment_detr"] is MomentDETRSelector


@pytest.mark.parametrize("strategy", ["top_window_uniform", "topk_saliency"])
@pytest.mark.parametrize("snap", [False, True])
def test_selector_end_to_end(tiny, video, strategy, snap):
    clip, tok, mdetr = tiny
    cache: dict = {}
    kw = dict(
        model=mdetr,
        clip_model=clip,
        clip_tokenizer=tok,
        frame_strategy=strategy,
        snap_to_candidates=snap,
        feature_cache=cache,
    )
    a = MomentDETRSelector(**kw).select(_inp(video), 4)
    b = MomentDETRSelector(**kw).select(_inp(video), 4)
    cand = video[1]
    assert a.frame_indices == b.frame_indices and a.extra["raw"] == b.extra["raw"]  # deterministic
    assert len(a.frame_indices) == 4 and a.frame_indices == sorted(a.frame_indices)
    assert all(0 <= f < cand.num_video_frames for f in a.frame_indices)
    assert a.times == [f / cand.fps for f in a.frame_indices]
    assert a.selector == "moment_detr" and a.config["frame_strategy"] == strategy
    ex = a.extra
    assert ex["frame_strategy"] == strategy and ex["text_mode"] == "question_only"
    assert ex["query"] == "why did the boy run?" and ex["long_video_applied"] == "none"
    assert ex["num_clips"] == 5 and ex["clip_frame_indices"] == [29, 89, 149, 209, 269]
    assert len(ex["pred_relevant_windows"]) == 10 and len(ex["pred_saliency_scores"]) == 5
    raw = ex["raw"][0]
    assert np.array(raw["pred_logits"]).shape == (10, 2) and np.array(raw["pred_spans"]).shape == (10, 2)
    if strategy == "top_window_uniform":
        assert ex["window"] is not None and ex["window"][2] == ex["pred_relevant_windows"][0][2]
        st, ed = ex["window_frames"]
        if not snap:
            assert all(st <= f < ed for f in a.frame_indices)
    else:
        assert len(ex["clips"]) == 4
    if snap:
        assert all(p is not None for p in a.candidate_positions)
        assert len(set(a.frame_indices)) == 4 and set(a.frame_indices) <= set(cand.indices)
        assert [cand.indices[p] for p in a.candidate_positions] == a.frame_indices
    assert len(cache) == 1
    assert json.loads(a.model_dump_json())["extra"]["frame_strategy"] == strategy  # JSON-ready record


def test_selector_question_options_mode(tiny, video):
    clip, tok, mdetr = tiny
    sel = MomentDETRSelector(model=mdetr, clip_model=clip, clip_tokenizer=tok, text_mode="question_options")
    s = sel.select(_inp(video), 2)
    assert (
        s.extra["query"] == "why did the boy run? to play. to eat."
        and s.extra["text_mode"] == "question_options"
    )
    for bad in (dict(text_mode="x"), dict(frame_strategy="x"), dict(long_video="x")):
        with pytest.raises(InputError):
            MomentDETRSelector(model=mdetr, clip_model=clip, clip_tokenizer=tok, **bad)


def test_selector_from_checkpoint_file(tiny, video, tmp_path):
    clip, tok, mdetr = tiny
    path = save_moment_detr(mdetr, tmp_path / "tiny.ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # weights-only load: no trust warning
        s = MomentDETRSelector(path, clip_model=clip, clip_tokenizer=tok).select(_inp(video), 4)
    ref = MomentDETRSelector(model=mdetr, clip_model=clip, clip_tokenizer=tok).select(_inp(video), 4)
    assert s.frame_indices == ref.frame_indices and s.config["checkpoint"] == str(path)


# ------------------------------------------------------------------------------------------------ plugin contract


def test_options_contract():
    cls = REGISTRY["moment_detr"]
    assert cls.rank == 40 and not cls.scores_candidates and not cls.needs_gold
    assert set(declared_options("moment_detr")) == {
        "mdetr_checkpoint",
        "trust_checkpoint",
        "clip_model",
        "text_mode",
        "long_video",
        "frame_strategy",
        "snap_to_candidates",
    }
    defaults = cls.Options()
    assert defaults.long_video == "refuse" and defaults.text_mode == "question_only"
    with pytest.raises(InputError, match="mdetr_checkpoint"):
        build_selector("moment_detr", None)  # a real runtime (or none) needs a checkpoint
    with pytest.raises(InputError) as err:
        build_selector("moment_detr", None, long_video="forever")
    assert "\n" not in str(err.value) and "long_video" in str(err.value)
    with pytest.raises(InputError, match="pixels"):
        build_selector("moment_detr", None, pixels="sevila_224")  # a clip option, not a moment_detr one


def test_build_selector_tiny_runtime_shares_models_and_features(tiny_runtime, video):
    a = build_selector("moment_detr", tiny_runtime)
    b = build_selector("moment_detr", tiny_runtime, frame_strategy="topk_saliency", snap_to_candidates=True)
    clip_sel = build_selector("clip", tiny_runtime)
    assert a.model is b.model and a.clip is b.clip is clip_sel.model
    assert a.long_video == "refuse" and a.checkpoint is None
    first = a.select(_inp(video), 4)
    before = selector_memo_stats()
    second = b.select(_inp(video), 4)
    after = selector_memo_stats()
    assert after["features"]["stores"] == before["features"]["stores"]  # clip features reused
    assert after["features"]["hits"] == before["features"]["hits"] + 1
    assert first.extra["pred_saliency_scores"] == second.extra["pred_saliency_scores"]
    assert second.extra["frame_strategy"] == "topk_saliency" and second.extra["snap_to_candidates"] is True
    fp = a.fingerprint()
    assert fp["selector"] == "moment_detr" and fp["checkpoint"] == "tiny-random-moment-detr"
    assert fp != b.fingerprint()


def test_build_selector_from_checkpoint_shares_and_fingerprints(tiny, video, tmp_path):
    clip, tok, mdetr = tiny
    clip.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    path = save_moment_detr(mdetr, tmp_path / "m.ckpt")
    opts = {"mdetr_checkpoint": str(path), "clip_model": str(tmp_path / "clip")}
    a = build_selector("moment_detr", None, **opts)
    b = build_selector("moment_detr", None, long_video="sliding", **opts)
    assert a.model is b.model and a.clip is b.clip
    ref = MomentDETRSelector(model=mdetr, clip_model=clip, clip_tokenizer=tok).select(_inp(video), 4)
    assert a.select(_inp(video), 4).frame_indices == ref.frame_indices
    with pytest.warns(UserWarning, match="weights_only=False"):
        trusted_model = build_selector("moment_detr", None, trust_checkpoint=True, **opts).model
    assert trusted_model is not a.model  # the trust setting is part of the model memo key
    fp = a.fingerprint()
    assert fp["checkpoint"]["size"] == path.stat().st_size and fp["clip_model"]["path"].endswith("clip")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rewritten = build_selector("moment_detr", None, **opts)
    assert rewritten.fingerprint() != fp
    assert rewritten.model is not a.model  # a changed file is loaded again
