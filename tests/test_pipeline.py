"""The batched pipeline: forward = select + answer, the paper's oracle rule, reverse chain, timing hook."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sevila_tools.encoding import FrameSpec, VideoEncoder
from sevila_tools.pipeline import Pipeline, Query
from sevila_tools.prompts import answerer_prompt, localizer_prompt
from sevila_tools.runtime import AnswerOutput
from sevila_tools.selectors import topk_sorted
from sevila_tools.timing import StageClock

OPTS = ["red square.", "blue square.", "green square."]


@pytest.fixture(scope="module")
def encoded(tiny_runtime, video_file):
    return VideoEncoder(tiny_runtime).encode(FrameSpec(str(video_file), 8))


def test_forward_is_localizer_topk_then_concat_answerer(tiny_runtime, encoded):
    pipe = Pipeline(tiny_runtime)
    q = Query("what moves?", OPTS)
    out = pipe.forward([(encoded, q)], 3)[0]
    yes, _ = tiny_runtime.localizer_logits(encoded.raw[None], [localizer_prompt(q.question, OPTS)])
    positions = topk_sorted(yes[0].tolist(), 3)
    assert out.selection.candidate_positions == positions
    ref = tiny_runtime.answer(encoded.raw[positions][None], [answerer_prompt(q.question, OPTS)], 3)
    assert out.answer.index == ref.predictions[0]
    assert out.answer.probs == pytest.approx(ref.probs[0].tolist())
    assert out.answer.frame_indices == [encoded.indices[p] for p in positions]


def test_batch_of_questions_equals_one_at_a_time(tiny_runtime, encoded):
    pipe = Pipeline(tiny_runtime)
    qs = [Query("what moves?", OPTS), Query("which colour is it?", OPTS[:2]), Query("where?", OPTS)]
    together = pipe.forward([(encoded, q) for q in qs], 2)
    alone = [pipe.forward([(encoded, q)], 2)[0] for q in qs]
    for a, b in zip(together, alone, strict=True):
        assert a.selection.frame_indices == b.selection.frame_indices
        assert a.answer.index == b.answer.index
        assert a.answer.probs == pytest.approx(b.answer.probs, abs=1e-5)


def _rigged(runtime, single: int, multi: int, n: int = 3):
    """The runtime with single-frame answers fixed to option ``single`` and multi-frame ones to ``multi``."""

    def logits(rows: int, pick: int) -> torch.Tensor:
        out = torch.zeros(rows, n)
        out[:, pick] = 5.0
        return out

    def frame_answers(raw, texts, num_options, decoding="teacher_forced"):
        rows = raw.shape[0] * raw.shape[1]
        return AnswerOutput(logits(rows, single), [runtime.ids.option] * rows, [False] * len(texts))

    def answer(raw, texts, num_options, decoding="faithful"):
        return AnswerOutput(logits(raw.shape[0], multi), [runtime.ids.option] * raw.shape[0], [False] * len(texts))

    fake = dataclasses.replace(runtime)
    fake.frame_answers = frame_answers  # type: ignore[method-assign]
    fake.answer = answer  # type: ignore[method-assign]
    return fake


def test_oracle_counts_wrong_when_only_the_multi_frame_answerer_is_right(tiny_runtime, encoded):
    """Table 9: right only if some single candidate alone gives the gold answer."""
    gold = 0
    fake = _rigged(tiny_runtime, single=2, multi=gold)  # every single frame says C, all frames together say A
    out = Pipeline(fake, encoder=VideoEncoder(fake)).forward([(encoded, Query("q?", OPTS, gold))], 2, "oracle")[0]
    assert out.answer.index == 2 and out.answer.index != gold
    assert out.answer.strategy == "oracle"


def test_oracle_counts_right_when_a_single_frame_is_right(tiny_runtime, encoded):
    fake = _rigged(tiny_runtime, single=1, multi=0)  # multi-frame wrong, single frames right
    out = Pipeline(fake, encoder=VideoEncoder(fake)).forward([(encoded, Query("q?", OPTS, 1))], 2, "oracle")[0]
    assert out.answer.index == 1


def test_oracle_without_gold_is_refused(tiny_runtime, encoded):
    with pytest.raises(Exception, match="needs the gold answer"):
        Pipeline(tiny_runtime).forward([(encoded, Query("q?", OPTS))], 2, "oracle")


def test_pseudo_labels_equal_independent_single_frame_answers(tiny_runtime, encoded):
    q = Query("what moves?", OPTS, 1)
    labels = Pipeline(tiny_runtime).pseudo_labels([(encoded, q)])[0]
    preds = tiny_runtime.frame_answers(encoded.raw[None], [answerer_prompt(q.question, OPTS)], 3).predictions
    assert labels == ["yes" if p == 1 else "no" for p in preds]
    assert len(labels) == encoded.num_frames


def test_timer_sees_every_stage(tiny_runtime, video_file):
    clock = StageClock()
    enc = VideoEncoder(tiny_runtime, timer=clock)
    ev = enc.encode(FrameSpec(str(video_file), 6))
    Pipeline(tiny_runtime, encoder=enc).forward([(ev, Query("q?", OPTS))], 2)
    assert {"decode", "vit", "select", "gather", "answer"} <= set(clock.seconds)
    assert clock.calls["decode"] == 1 and clock.calls["answer"] == 1


def test_unknown_answer_strategy_is_one_line_error(tiny_runtime):
    with pytest.raises(Exception, match="unknown answerer 'best'; choose one of: concat, voting"):
        Pipeline(tiny_runtime, answerer="best")


def test_forward_reuses_a_given_selection_without_selecting_again(tiny_runtime, encoded, monkeypatch):
    pipe = Pipeline(tiny_runtime)
    item = [(encoded, Query("what moves?", OPTS))]
    selections = pipe.select(item, 2)
    expected = pipe.forward(item, 2)[0]
    calls = []
    monkeypatch.setattr(tiny_runtime, "localizer_logits", lambda *a, **k: calls.append(1))
    got = pipe.forward(item, 2, selections=selections)[0]
    assert calls == [] and got.answer.index == expected.answer.index
    assert got.selection.frame_indices == expected.selection.frame_indices
