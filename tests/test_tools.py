"""The three typed tools and the forward chain on a synthetic video with the tiny model."""

import pytest
import torch

from sevila_tools.chain import SevilaChain
from sevila_tools.errors import InputError, VideoError
from sevila_tools.prompts import answerer_prompt, localizer_prompt
from sevila_tools.schemas import ForwardResult, LocalizeRequest, LocalizeResult
from sevila_tools.tools import Answerer, Localizer, PseudoLabeller
from sevila_tools.video import sample_frames

Q = "what is the square doing?"
OPTS = ["moving left.", "moving right.", "standing still."]


@pytest.fixture(scope="module")
def chain(tiny_runtime):
    return SevilaChain(tiny_runtime)


def test_tools_share_one_runtime(chain, tiny_runtime):
    tools = [chain.localizer, chain.answerer, chain.pseudo_labeller]
    assert all(t.runtime is tiny_runtime and t.pipeline is chain.pipeline for t in tools)


def test_a_request_instance_is_validated_once(chain, video_file, monkeypatch):
    """A request model instance is used as it is: the tool and the chain do not validate it again."""
    from sevila_tools.schemas import ForwardRequest

    req = LocalizeRequest(video=str(video_file), question=Q, num_frames=8, num_keyframes=2)
    fwd = ForwardRequest(video=str(video_file), question=Q, options=OPTS, num_frames=8, num_keyframes=2)
    calls = []
    for model in (LocalizeRequest, ForwardRequest):
        original = model.model_validate.__func__
        monkeypatch.setattr(model, "model_validate", classmethod(lambda c, v, *a, _o=original, **k: (
            calls.append(c.__name__), _o(c, v, *a, **k))[1]))
    chain.localizer(req)
    chain.forward(fwd)
    assert calls == []
    chain.localizer(req.model_dump())
    assert calls == ["LocalizeRequest"]


def test_localizer_scores_topk_and_time_order(chain, tiny_runtime, video_file):
    res = chain.localizer(
        {"video": str(video_file), "question": Q, "options": OPTS, "num_frames": 16, "num_keyframes": 4}
    )
    frames = sample_frames(str(video_file), 16)
    assert [f.frame_index for f in res.frames] == frames.indices
    assert [f.time for f in res.frames] == pytest.approx([i / 30 for i in frames.indices])
    # independent: scores = raw yes logits for these frames; keyframes = top-4 by score, sorted by time
    yes, no = tiny_runtime.localizer_logits(
        tiny_runtime.vit(frames.frames)[None], [localizer_prompt(Q, OPTS)]
    )
    assert [f.score for f in res.frames] == pytest.approx(yes[0].tolist(), abs=1e-5)
    probs = torch.stack([no[0], yes[0]], -1).softmax(-1)[:, 1]
    assert [f.yes_prob for f in res.frames] == pytest.approx(probs.tolist(), abs=1e-5)
    top = sorted(sorted(range(16), key=lambda i: -yes[0][i].item())[:4])
    assert [k.position for k in res.keyframes] == top
    assert [k.frame_index for k in res.keyframes] == [frames.indices[i] for i in top]
    assert sum(f.keyframe for f in res.frames) == 4
    assert res.notice and "RANDOM" in res.notice and res.model.random_weights
    LocalizeResult.model_validate(res.model_dump(mode="json"))


def test_forward_chain_answer_equals_direct_answerer(chain, tiny_runtime, video_file):
    res = chain.forward({"video": str(video_file), "question": Q, "options": OPTS, "num_frames": 16})
    assert isinstance(res, ForwardResult)
    kf = [k.frame_index for k in res.localization.keyframes]
    assert kf == sorted(kf) and res.answer.frame_indices == kf
    frames = sample_frames(str(video_file), 16)
    pos = [frames.indices.index(i) for i in kf]
    out = tiny_runtime.answer(tiny_runtime.vit(frames.frames[pos])[None], [answerer_prompt(Q, OPTS)], 3)
    assert res.answer.answer_index == out.predictions[0]
    assert res.answer.option_probs == pytest.approx(out.probs[0].tolist(), abs=1e-5)
    assert res.answer.answer_letter == "ABC"[out.predictions[0]]
    assert res.answer.answer_text == OPTS[out.predictions[0]]
    assert res.answer.prompt == answerer_prompt(Q, OPTS)


def test_uniform_selector_uses_n_equals_k_rule(chain, video_file):
    res = chain.localizer(
        {"video": str(video_file), "question": Q, "selector": "uniform", "num_frames": 32, "num_keyframes": 4}
    )
    # 90 frames, n=4: edges 0,22,45,67,90 -> midpoints 11,33,56,78 (not every 8th candidate)
    assert [k.frame_index for k in res.keyframes] == [11, 33, 56, 78]


def test_voting_answerer_is_majority_of_single_frame_answers(chain, tiny_runtime, video_file):
    res = chain.forward(
        {
            "video": str(video_file),
            "question": Q,
            "options": OPTS,
            "num_frames": 8,
            "num_keyframes": 3,
            "answerer": "voting",
        }
    )
    frames = sample_frames(str(video_file), 8)
    pos = [frames.indices.index(k.frame_index) for k in res.localization.keyframes]
    out = tiny_runtime.frame_answers(
        tiny_runtime.vit(frames.frames[pos])[None], [answerer_prompt(Q, OPTS)], 3, "faithful"
    )
    assert res.answer.votes == out.predictions
    counts = [out.predictions.count(i) for i in range(3)]
    assert counts[res.answer.answer_index] == max(counts)


def test_pseudo_labels_equal_independent_teacher_forced_predictions(tiny_runtime, video_file):
    pl = PseudoLabeller(tiny_runtime)
    res = pl({"video": str(video_file), "question": Q, "options": OPTS, "answer": 1, "num_frames": 4})
    frames = sample_frames(str(video_file), 4)
    text = answerer_prompt(Q, OPTS)
    expected = []
    for i in range(4):  # one frame at a time, [Frame: | Q | text], decoder [start, ▁Option] -> position 1
        embeds, mask, _ = tiny_runtime.single_frame_inputs(
            tiny_runtime.vit(frames.frames[i : i + 1])[None], [text], "answerer"
        )
        labels = tiny_runtime.tokenizer(["Option B"], return_tensors="pt").input_ids
        with torch.no_grad():
            logits = tiny_runtime.model.language_model(
                inputs_embeds=embeds, attention_mask=mask, labels=labels
            ).logits
        expected.append(int(logits[0, 1, list(tiny_runtime.ids.letters[:3])].argmax()))
    assert [lab.predicted for lab in res.labels] == expected
    assert [lab.label for lab in res.labels] == ["yes" if p == 1 else "no" for p in expected]
    assert res.positive_rate == pytest.approx(sum(p == 1 for p in expected) / 4)


def test_random_pseudo_label_sampling_is_seeded(tiny_runtime, video_file):
    pl = PseudoLabeller(tiny_runtime)
    req = {
        "video": str(video_file),
        "question": Q,
        "options": OPTS,
        "answer": 0,
        "num_frames": 4,
        "sampling": "random",
        "seed": 3,
    }
    a, b = pl(req), pl(req)
    assert [x.frame_index for x in a.labels] == [x.frame_index for x in b.labels]
    for lab, (lo, hi) in zip(a.labels, [(0, 22), (22, 45), (45, 67), (67, 90)], strict=True):
        assert lo <= lab.frame_index < hi


def test_answerer_at_timestamps(tiny_runtime, video_file):
    res = Answerer(tiny_runtime)(
        {"video": str(video_file), "question": Q, "options": OPTS[:2], "timestamps": [2.0, 0.5]}
    )
    assert res.frame_indices == [15, 60] and res.frame_times == [0.5, 2.0]


def test_request_validation():
    with pytest.raises(ValueError, match="num_keyframes"):
        LocalizeRequest(video="x.mp4", question="q", num_frames=4, num_keyframes=5)
    with pytest.raises(ValueError, match="start"):
        LocalizeRequest(video="x.mp4", question="q", start=3, end=2)
    with pytest.raises(ValueError, match="question is empty"):
        LocalizeRequest(video="x.mp4", question="  ")
    with pytest.raises(ValueError):
        LocalizeRequest(video="x.mp4", question="q", options=list("abcdef"))


def test_bad_video_and_selector(tiny_runtime, tmp_path):
    loc = Localizer(tiny_runtime)
    with pytest.raises(VideoError):
        loc({"video": str(tmp_path / "missing.mp4"), "question": "q"})
    (tmp_path / "v.mp4").write_text("not a video")
    with pytest.raises(VideoError):
        loc({"video": str(tmp_path / "v.mp4"), "question": "q"})


def test_unknown_selector(tiny_runtime, video_file):
    with pytest.raises(InputError, match="unknown selector"):
        Localizer(tiny_runtime)({"video": str(video_file), "question": "q", "selector": "nope"})


def test_ask_generates_text(chain, video_file):
    res = chain.ask(
        {"video": str(video_file), "question": Q, "num_frames": 8, "num_keyframes": 2, "max_new_tokens": 4}
    )
    assert isinstance(res.answer_text, str) and len(res.keyframes) == 2
