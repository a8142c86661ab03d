"""Tests for probe_video (cheap pre-flight), the empty-window rule and the decode-failure exception."""

from __future__ import annotations

import pickle
from pathlib import Path

import av
import numpy as np
import pytest

from sevila_tools import video as V
from sevila_tools.errors import InputError, VideoError
from sevila_tools.synthetic import decode_counter, make_video, make_zero_frame_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("probe_clips")
    return {
        "mp4": make_video(d / "clip.mp4", num_frames=60, width=160, height=120),
        "mkv": make_video(d / "clip.mkv", num_frames=45, width=160, height=120),
        "rot": make_video(d / "rot.mp4", num_frames=20, width=160, height=120, rotation=270),
        "vfr": make_video(d / "vfr.mkv", num_frames=25, width=160, height=120, vfr=True),
    }


# ------------------------------------------------------------------------------------------------
# probe_video


@pytest.mark.parametrize("clip", ["mp4", "mkv", "rot", "vfr"])
def test_probe_video_matches_probe(clips, clip):
    cheap = V.probe_video(clips[clip])
    full = V.probe(clips[clip], decoder="pyav")  # counts mkv frames by decoding everything
    assert cheap == full


def test_probe_video_facts(clips):
    info = V.probe_video(clips["mp4"])
    assert (info.num_frames, info.fps, info.duration, info.width, info.height) == (60, 30.0, 2.0, 160, 120)
    assert V.probe_video(clips["mkv"]).num_frames == 45  # no stored count: packets counted
    assert (V.probe_video(clips["rot"]).width, V.probe_video(clips["rot"]).height) == (120, 160)


def _audio_only(path: Path) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def test_probe_video_rejects_bad_files(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = {
        text: "cannot decode video",
        empty: "cannot decode video",
        tmp_path / "missing.mp4": "not found",
        make_zero_frame_video(tmp_path / "zero.mp4"): "cannot decode video",
        make_zero_frame_video(tmp_path / "zero.mkv"): "cannot decode video",
        _audio_only(tmp_path / "sound.wav"): "no video stream",
    }
    for path, phrase in cases.items():
        with pytest.raises(VideoError) as info:
            V.probe_video(path)
        msg = str(info.value)
        assert phrase in msg and str(path) in msg and "\n" not in msg, msg


# ------------------------------------------------------------------------------------------------
# Empty or reversed windows


@pytest.mark.parametrize(
    ("start", "end", "first"),
    [
        (5.0, 5.0, 150),  # empty
        (6.0, 5.0, 180),  # reversed
        (12.0, 20.0, 299),  # starts after the video: the last frame
        (None, -1.0, 0),  # ends before the video starts
        (1.0, 1.02, 30),  # inside one frame (the only case "raise" accepts too)
    ],
)
def test_start_frame_rule(start, end, first):
    assert V.window_is_empty(300, 30.0, start, end)
    idx, edges, padded = V.sample_indices(300, 4, 30.0, start, end, empty_window="start_frame")
    assert (idx, edges, padded) == ([first] * 4, [first] * 5, False)
    idx, edges, padded = V.sample_indices(300, 4, 30.0, start, end, mode="random", empty_window="start_frame")
    assert idx == [first] * 4
    # fewer frames than requested: padded as usual
    assert V.sample_indices(3, 5, 1.0, 2.0, 1.0, empty_window="start_frame") == ([2] * 5, [2] * 4, True)


def test_empty_window_raise_is_the_default():
    for start, end in [(5.0, 5.0), (6.0, 5.0), (12.0, 20.0), (None, -1.0)]:
        with pytest.raises(InputError):
            V.sample_indices(300, 4, 30.0, start, end)
    assert V.sample_indices(300, 4, 30.0, 1.0, 1.02)[0] == [30] * 4
    assert not V.window_is_empty(300, 30.0, None, None)
    assert not V.window_is_empty(300, 30.0, 1.0, 2.0)
    with pytest.raises(InputError):
        V.sample_indices(300, 4, 30.0, 6.0, 5.0, empty_window="skip")  # type: ignore[arg-type]


def test_sample_frames_reports_the_start_frame_rule(clips):
    s = V.sample_frames(clips["mp4"], 4, start=1.5, end=1.0, size=None, empty_window="start_frame")
    assert s.empty_window and s.indices == [45] * 4 and s.edges == [45] * 5
    assert [decode_counter(f) for f in s.frames] == [45] * 4
    normal = V.sample_frames(clips["mp4"], 4, start=0.5, end=1.5, size=None)
    assert not normal.empty_window and normal.indices == [18, 26, 33, 41]
    with pytest.raises(InputError):
        V.sample_frames(clips["mp4"], 4, start=1.5, end=1.0)


# ------------------------------------------------------------------------------------------------
# The decode-failure exception


def test_decode_failure_can_be_rebuilt_from_a_message():
    exc = V._DecodeFailure(Path("a.mp4"), "moov atom not found", "pyav")
    assert str(exc) == "cannot decode video: a.mp4 (pyav: moov atom not found)"
    again = type(exc)(f"question q1 (a.mp4): {exc}")  # what a re-raise with context does
    assert isinstance(again, VideoError) and str(again).startswith("question q1 (a.mp4): cannot decode")
    for e in (exc, again):
        copy = pickle.loads(pickle.dumps(e))  # crosses process boundaries intact
        assert type(copy) is type(e) and str(copy) == str(e) and copy.reason == e.reason

    try:  # a real failure, re-raised the way the training loader does
        try:
            V._PyAVReader(Path(__file__), None)
        except VideoError as inner:
            raise type(inner)(f"question 7 ({__file__}): {inner}") from inner
    except VideoError as outer:
        assert "question 7" in str(outer) and "cannot decode video" in str(outer)
    else:
        pytest.fail("a Python source file decoded as video")
