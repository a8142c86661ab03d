"""The localization plot draws any question without matplotlib warnings: emoji, CJK and dollar signs."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from sevila_tools.plotting import MISSING_GLYPH, drawable, plot_localization
from sevila_tools.schemas import LocalizeRequest
from sevila_tools.tools import Localizer

QUESTION = "why does the 🐕 jump 👍🏽 over the 你 box for $5 and $6? ❤️"


def test_drawable_keeps_what_the_font_has_and_squares_the_rest():
    assert drawable("plain é ü – “quotes” ❤") == "plain é ü – “quotes” ❤"
    assert drawable(QUESTION) == (f"why does the {MISSING_GLYPH} jump {MISSING_GLYPH} over the {MISSING_GLYPH} box "
                                  "for \\$5 and \\$6? ❤️")
    assert drawable("a\nb") == "a\nb"


@pytest.mark.parametrize("question", ["why does the 🐕 jump over the 你 box? 👍🏽", QUESTION])
def test_plot_with_an_emoji_question_warns_nothing(tiny_runtime, video_file, tmp_path, caplog, question):
    """Missing glyphs are a UserWarning in plain text and a log line inside mathtext (``$...$``)."""
    loc = Localizer(tiny_runtime).run(LocalizeRequest(video=str(video_file), question=question, num_frames=8,
                                                      num_keyframes=2))
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="matplotlib"):
        warnings.simplefilter("error")
        path = plot_localization(loc, tmp_path / "p.png")
    assert caplog.records == [] and Path(path).read_bytes()[:4] == b"\x89PNG"


def test_web_answer_tab_with_an_emoji_question_warns_nothing(tiny_runtime, video_file, tmp_path, caplog):
    from sevila_tools.chain import SevilaChain
    from sevila_tools.web import WebDemo

    upload = tmp_path / "upload" / "clip.mp4"  # the page deletes its uploads when the session ends
    upload.parent.mkdir()
    upload.write_bytes(Path(video_file).read_bytes())
    demo = WebDemo(SevilaChain(tiny_runtime), work_dir=tmp_path / "web")
    try:
        fields = demo.fields(str(upload), None, QUESTION, "a 🐕.\nno dog.", 8, 2, None, None)
        with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="matplotlib"):
            warnings.simplefilter("error")
            stages = list(demo.run(fields, "localizer"))
        assert Path(stages[0].timeline).read_bytes()[:4] == b"\x89PNG"
    finally:
        demo.close()
    assert caplog.records == [] and stages[-1].answer is not None and Path(video_file).exists()
