"""Scene-aware CLIP selector on a synthetic three-scene video with the tiny CLIP."""

from __future__ import annotations

import json

import pytest
import torch

from sevila_tools.errors import InputError
from sevila_tools.selectors import build_selector, declared_options
from sevila_tools.selectors.base import REGISTRY, SelectorInput
from sevila_tools.selectors.clip import CLIPSelector, build_tiny_clip
from sevila_tools.selectors.scene import SceneSelector, scene_segments, select_per_segment
from sevila_tools.synthetic import make_scene_video
from sevila_tools.video import sample_frames

SCENES = [(40, (220, 30, 30)), (40, (30, 200, 40)), (40, (40, 40, 210))]


@pytest.fixture(scope="module")
def tiny():
    model, tok, _ = build_tiny_clip(seed=0)
    return model, tok


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    path = make_scene_video(tmp_path_factory.mktemp("scene") / "s.mp4", SCENES, fps=30)
    cand = sample_frames(path, 32)
    return SelectorInput(
        video=str(path), candidates=cand, question="what color is the video?", options=["red."]
    )


def test_registered():
    assert REGISTRY["scene"] is SceneSelector


def test_scene_segments_and_allocation():
    e = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 2 + [[-1.0, 0.0]] * 3)
    segs, sims, thr = scene_segments(e)
    assert segs == [(0, 3), (3, 5), (5, 8)] and len(sims) == 7 and thr < 1.0
    assert scene_segments(torch.ones(5, 4))[0] == [(0, 5)]  # static video: one segment
    assert scene_segments(e, threshold=-1.0)[0] == [(0, 8)]
    rel = [0.1, 0.5, 0.2, 0.9, 0.3, 0.4, 0.4, 0.0]
    assert select_per_segment(rel, segs, 2) == [1, 3]  # segments ranked by their best frame
    assert select_per_segment(rel, segs, 3) == [1, 3, 5]  # tie inside a segment -> earlier frame
    assert select_per_segment(rel, segs, 5) == [1, 3, 4, 5, 6]  # global fill after one per segment
    with pytest.raises(InputError):
        select_per_segment(rel, segs, 9)


def test_one_frame_per_scene(tiny, inp):
    model, tok = tiny
    s = SceneSelector(model, tok).select(inp, 3)
    cand = inp.candidates
    assert s.extra["num_segments"] == 3
    scene_of = [f // 40 for f in s.frame_indices]
    assert scene_of == [0, 1, 2] and s.frame_indices == sorted(s.frame_indices)
    assert all(
        cand.indices[b - 1] < 40 * (j + 1) <= cand.indices[b] for j, b in enumerate(s.extra["boundaries"])
    )
    # relevance is exactly the clip selector's score
    c = CLIPSelector(model, tok).select(inp, 3)
    assert s.candidate_scores == c.candidate_scores
    assert s.selector == "scene" and s.config["pixels"] == "native_crop"
    json.loads(s.model_dump_json())
    again = SceneSelector(model, tok).select(inp, 3)
    assert again.frame_indices == s.frame_indices
    five = SceneSelector(model, tok, pixels="sevila_224").select(inp, 5)
    assert len(five.frame_indices) == 5 and {f // 40 for f in five.frame_indices} == {0, 1, 2}


def test_options_contract(inp):
    cls = REGISTRY["scene"]
    assert cls.rank == 30 and cls.scores_candidates and not cls.needs_gold
    assert declared_options("scene") == [
        "clip_model",
        "text_mode",
        "long_text",
        "pixels",
        "scene_threshold",
        "scene_z",
        "scene_max_similarity",
    ]
    with pytest.raises(InputError) as err:
        build_selector("scene", None, scene_threshold=2.0)
    assert "\n" not in str(err.value) and "scene_threshold" in str(err.value)
    with pytest.raises(InputError, match="threshold"):
        build_selector("scene", None, threshold=0.5)  # the constructor name is not an option key
    sel = build_selector("scene", None, scene_threshold=-1.0, scene_z=2.0, pixels="sevila_224")
    assert (sel.threshold, sel.z, sel.clip.pixels) == (-1.0, 2.0, "sevila_224")
    fp = sel.fingerprint()
    assert fp["selector"] == "scene" and fp["threshold"] == -1.0 and fp["pixels"] == "sevila_224"
    assert build_selector("scene", None).fingerprint() != fp


def test_build_selector_on_tiny_runtime(tiny_runtime, inp):
    one = build_selector("scene", tiny_runtime, scene_threshold=-1.0).select(inp, 3)
    assert one.extra["num_segments"] == 1 and one.config["threshold"] == -1.0
    adaptive = build_selector("scene", tiny_runtime).select(inp, 3)
    assert adaptive.candidate_scores == one.candidate_scores  # same CLIP, same relevance
