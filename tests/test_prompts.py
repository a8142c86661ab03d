"""Exact SeViLA prompt strings (docs/method.md, "Prompt texts")."""

import pytest

from sevila_tools.errors import InputError
from sevila_tools.prompts import (
    answer_target,
    answerer_prompt,
    localizer_prompt,
    prompts_for,
    qvhighlights_localizer_prompt,
    video_prefix,
    vlep_answerer_prompt,
    vlep_localizer_prompt,
)

Q = "why does the person lie down without wearing her footwear?"
OPTS = ["follow woman.", "cleasn environment.", "resting.", "hot indoor.", "sunbathing in beach."]


def test_answerer_prompt_matches_spec_example():
    assert answerer_prompt(Q, OPTS) == (
        "Question: why does the person lie down without wearing her footwear? Option A: follow woman. "
        "Option B: cleasn environment. Option C: resting. Option D: hot indoor. Option E: sunbathing in beach. "
        "Considering the information presented in the frame, select the correct answer from the options."
    )


def test_localizer_prompt_joins_options_without_letters_with_space_before_paren():
    assert localizer_prompt("what is it?", ["a dog.", "a cat."]) == (
        "Question: what is it? Options: (a dog. a cat. ) Does the information within the frame provide the "
        "necessary details to accurately answer the given question?"
    )


def test_vlep_prompts():
    assert vlep_answerer_prompt(["he sits.", "he runs."]) == (
        "Upon observing the provided frames, what is the most probable subsequent event? "
        "Option A: he sits. Option B: he runs."
    )
    assert vlep_localizer_prompt(["he sits.", "he runs."]).endswith(
        "Option B: he runs. Does the information within the frame provide the necessary details to predict next event?"
    )
    assert prompts_for("next_event", "", ["x", "y"]) == (
        vlep_localizer_prompt(["x", "y"]),
        vlep_answerer_prompt(["x", "y"]),
    )


def test_qvhighlights_prompt_appends_period_once():
    expected = (
        "Question: Chef makes pizza. Option A: yes. Option B: no. Does the information within the frame provide "
        "the necessary details to accurately answer the given question?"
    )
    assert qvhighlights_localizer_prompt("Chef makes pizza") == expected
    assert qvhighlights_localizer_prompt("Chef makes pizza.") == expected


def test_prefixes_and_target():
    assert video_prefix(1) == "Frame 1: "
    assert video_prefix(10) == "Frame 10: "
    assert answer_target(2) == "Option C"


def test_text_is_used_verbatim_no_lowercasing():
    assert "Why Does" in answerer_prompt("Why Does X?", ["A.", "B."])


def test_more_than_five_options_rejected():
    with pytest.raises(InputError, match="at most 5 options"):
        answerer_prompt("q?", list("abcdef"))
