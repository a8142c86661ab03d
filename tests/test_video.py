"""Tests for sevila_tools.video (frame sampling, decord/PyAV readers) and sevila_tools.synthetic."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sevila_tools import video as V
from sevila_tools.errors import InputError, VideoError
from sevila_tools.synthetic import (
    decode_counter,
    make_realistic_video,
    make_scene_video,
    make_video,
    make_zero_frame_video,
    synthetic_frame,
)
from sevila_tools.video import decode as decode_module

HAS_DECORD = V.decord_available()
needs_decord = pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")
DECODERS = ["decord", "pyav"] if HAS_DECORD else ["pyav"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "h264": make_video(d / "h264.mp4", num_frames=300, codec="libx264"),  # 10 s, B-frames, GOP 15
        "mpeg4": make_video(d / "mpeg4.mp4", num_frames=300, codec="mpeg4"),
        "mkv": make_video(d / "clip.mkv", num_frames=90, codec="libx264"),
        "avi": make_video(d / "clip.avi", num_frames=90, codec="mpeg4"),
        "short": make_video(d / "short.mp4", num_frames=10, width=160, height=120),
        "hd": make_video(d / "wide.mp4", num_frames=20, width=320, height=180),
    }


# ------------------------------------------------------------------------------------------------
# sample_indices: the official rule


def _official_uniform(vlen: int, n_frms: int, fps: float, clip: tuple[float, float] | None) -> list[int]:
    """Literal transcription of the official load_video index logic (uniform sampling)."""
    n_frms = min(n_frms, vlen)
    if clip is None:
        start, end = 0, vlen
    else:
        start, end = int(clip[0] * fps), int(clip[1] * fps)
        if start < 0:
            start = 0
        if end > vlen:
            end = vlen
    intervals = np.linspace(start=start, stop=end, num=n_frms + 1).astype(int)
    ranges = [(interv, intervals[i + 1]) for i, interv in enumerate(intervals[:-1])]
    return [int((x[0] + x[1]) // 2) for x in ranges]


def test_sample_indices_300_frames_32():
    idx, edges, padded = V.sample_indices(300, 32, 30.0)
    hand_edges = [int(9.375 * j) for j in range(33)]  # 300 / 32 = 9.375 frames per segment
    assert edges == hand_edges
    assert idx == [(hand_edges[j] + hand_edges[j + 1]) // 2 for j in range(32)]
    assert idx[:4] == [4, 13, 23, 32] and idx[-1] == 295
    assert padded is False


def test_sample_indices_n4():
    idx, edges, padded = V.sample_indices(300, 4, 30.0)
    assert edges == [0, 75, 150, 225, 300]
    assert idx == [37, 112, 187, 262]
    assert not padded


def test_sample_indices_window():
    # start 2.0 s, end 5.5 s at 30 fps -> frames [60, 165)
    # linspace(60, 165, 5) = 60, 86.25, 112.5, 138.75, 165
    idx, edges, padded = V.sample_indices(300, 4, 30.0, start=2.0, end=5.5)
    assert edges == [60, 86, 112, 138, 165]
    assert idx == [73, 99, 125, 151]
    assert not padded
    # end past the video is clamped to vlen; start before 0 is clamped to 0
    idx, edges, _ = V.sample_indices(300, 4, 30.0, start=8.0, end=20.0)
    assert edges == [240, 255, 270, 285, 300] and idx == [247, 262, 277, 292]
    idx, edges, _ = V.sample_indices(300, 2, 30.0, start=-1.0, end=1.0)
    assert edges == [0, 15, 30] and idx == [7, 22]
    # only start or only end
    assert V.sample_indices(300, 2, 30.0, start=5.0)[1] == [150, 225, 300]
    assert V.sample_indices(300, 2, 30.0, end=5.0)[1] == [0, 75, 150]
    # int() truncation with a non-integer fps: int(1.0 * 29.97) = 29, int(2.0 * 29.97) = 59
    assert V.sample_indices(300, 1, 29.97, start=1.0, end=2.0)[1] == [29, 59]
    # a window shorter than one frame yields that frame (official behaviour, not an error)
    assert V.sample_indices(300, 4, 30.0, start=1.0, end=1.02) == ([30] * 4, [30] * 5, False)


def test_sample_indices_padding_short_video():
    idx, edges, padded = V.sample_indices(10, 32, 30.0)
    assert padded is True
    assert edges == list(range(11))
    assert idx == list(range(10)) + [9] * 22
    assert len(idx) == 32


def test_sample_indices_window_shorter_than_n_is_not_padding():
    # 15-frame window, 32 segments: repeated indices but no padding (vlen >= n), as officially
    idx, edges, padded = V.sample_indices(300, 32, 30.0, start=0.0, end=0.5)
    assert not padded and len(idx) == 32 and len(edges) == 33
    assert idx == sorted(idx) and set(idx) <= set(range(15))


def test_sample_indices_matches_official_transcription():
    rng = random.Random(0)
    for _ in range(300):
        vlen = rng.randint(1, 2000)
        n = rng.randint(1, 64)
        fps = rng.choice([24.0, 25.0, 29.97, 30.0, 59.94])
        clip = None
        if rng.random() < 0.5:
            dur = vlen / fps
            s = rng.uniform(-1.0, dur * 0.9)
            e = rng.uniform(max(s, 0.0) + 0.05, dur * 1.2 + 0.1)
            clip = (s, e)
        expected = _official_uniform(vlen, n, fps, clip)
        expected += [expected[-1]] * (n - len(expected))
        got, _, padded = V.sample_indices(vlen, n, fps, *(clip or (None, None)))
        assert got == expected, (vlen, n, fps, clip)
        assert padded == (n > vlen)


def test_sample_indices_random_mode():
    a, edges, _ = V.sample_indices(300, 32, 30.0, mode="random", rng=np.random.default_rng(7))
    b, _, _ = V.sample_indices(300, 32, 30.0, mode="random", rng=np.random.default_rng(7))
    c, _, _ = V.sample_indices(300, 32, 30.0, mode="random", rng=np.random.default_rng(8))
    assert a == b and a != c
    for j, i in enumerate(a):
        assert edges[j] <= i < edges[j + 1]
    # empty segments give their left edge
    idx, edges, _ = V.sample_indices(300, 32, 30.0, end=0.5, mode="random", rng=np.random.default_rng(1))
    for j, i in enumerate(idx):
        assert i == edges[j] if edges[j] == edges[j + 1] else edges[j] <= i < edges[j + 1]
    # padded random
    idx, _, padded = V.sample_indices(5, 8, 30.0, mode="random", rng=np.random.default_rng(0))
    assert padded and idx[:5] == [0, 1, 2, 3, 4] and idx[5:] == [4, 4, 4]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_video_frames=300, n=0, fps=30.0),
        dict(num_video_frames=300, n=-3, fps=30.0),
        dict(num_video_frames=300, n=4, fps=30.0, start=5.0, end=5.0),
        dict(num_video_frames=300, n=4, fps=30.0, start=6.0, end=5.0),
        dict(num_video_frames=300, n=4, fps=30.0, start=10.0),  # starts at the end of a 10-s video
        dict(num_video_frames=300, n=4, fps=30.0, start=12.0, end=20.0),
        dict(num_video_frames=300, n=4, fps=30.0, end=-1.0),
        dict(num_video_frames=300, n=4, fps=30.0, mode="headtail"),
        dict(num_video_frames=0, n=4, fps=30.0),
        dict(num_video_frames=300, n=4, fps=0.0, start=1.0),
    ],
)
def test_sample_indices_input_errors(kwargs):
    with pytest.raises(InputError):
        V.sample_indices(**kwargs)


# ------------------------------------------------------------------------------------------------
# Reading frames: indices, timestamps, decoders


@pytest.mark.parametrize("decoder", DECODERS)
def test_probe(clips, decoder):
    info = V.probe(clips["h264"], decoder=decoder)
    assert (info.num_frames, info.fps, info.duration) == (300, 30.0, 10.0)
    assert (info.width, info.height) == (320, 240)
    assert info.path == str(clips["h264"])
    mkv = V.probe(clips["mkv"], decoder=decoder)  # mkv stores no frame count: PyAV counts by decoding
    assert (mkv.num_frames, mkv.fps) == (90, 30.0)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("clip", ["h264", "mpeg4"])
def test_sampled_frames_carry_their_index(clips, decoder, clip):
    s = V.sample_frames(clips[clip], 32, decoder=decoder, size=None)
    assert s.decoder == decoder
    assert s.frames.shape == (32, 240, 320, 3) and s.frames.dtype == np.uint8
    assert [decode_counter(f) for f in s.frames] == s.indices
    assert s.indices == V.sample_indices(300, 32, 30.0)[0]
    assert s.timestamps == [i / 30.0 for i in s.indices]
    assert (s.fps, s.num_video_frames, s.padded) == (30.0, 300, False)
    assert len(s.edges) == 33


@pytest.mark.parametrize("decoder", DECODERS)
def test_read_frames_order_duplicates_and_window(clips, decoder):
    idx = [250, 3, 3, 120, 299, 0]
    frames, used = V.read_frames(clips["h264"], idx, decoder=decoder, size=None)
    assert used == decoder
    assert [decode_counter(f) for f in frames] == idx
    s = V.sample_frames(clips["h264"], 4, start=2.0, end=5.5, decoder=decoder, size=None)
    assert s.indices == [73, 99, 125, 151]
    assert [decode_counter(f) for f in s.frames] == s.indices
    assert s.timestamps == pytest.approx([73 / 30, 99 / 30, 125 / 30, 151 / 30])


@pytest.mark.parametrize("decoder", DECODERS)
def test_sample_frames_padding_and_random(clips, decoder):
    s = V.sample_frames(clips["short"], 32, decoder=decoder, size=None)
    assert s.padded and s.frames.shape[0] == 32
    assert s.indices == list(range(10)) + [9] * 22
    assert [decode_counter(f) for f in s.frames] == s.indices
    r1 = V.sample_frames(clips["h264"], 8, decoder=decoder, mode="random", seed=3, size=None)
    r2 = V.sample_frames(clips["h264"], 8, decoder=decoder, mode="random", seed=3, size=None)
    assert r1.indices == r2.indices
    assert [decode_counter(f) for f in r1.frames] == r1.indices


@pytest.mark.parametrize("decoder", DECODERS)
def test_sizes(clips, decoder):
    s = V.sample_frames(clips["hd"], 4, decoder=decoder)  # 320x180 -> 224x224, no aspect preservation
    assert s.frames.shape == (4, 224, 224, 3)
    frames, _ = V.read_frames(clips["hd"], [0, 1], decoder=decoder, size=112)
    assert frames.shape == (2, 112, 112, 3)
    frames, _ = V.read_frames(clips["hd"], [0], decoder=decoder, size=None)
    assert frames.shape == (1, 180, 320, 3)


@pytest.mark.parametrize("decoder", DECODERS)
def test_frames_at_times(clips, decoder):
    s = V.frames_at_times(clips["h264"], [0.0, 1.0, 2.49, 9.99, 10.0], decoder=decoder, size=None)
    assert s.indices == [0, 30, 75, 299, 299]
    assert [decode_counter(f) for f in s.frames] == s.indices
    assert s.timestamps == [i / 30.0 for i in s.indices] and not s.padded and s.edges == []
    for bad in ([-0.1], [10.5], []):
        with pytest.raises(InputError):
            V.frames_at_times(clips["h264"], bad, decoder=decoder)


@needs_decord
@pytest.mark.parametrize("clip", ["h264", "mpeg4"])
@pytest.mark.parametrize("size", [None, 224])
def test_decord_and_pyav_are_bit_identical(clips, clip, size):
    idx = list(range(0, 300, 3)) + [299, 7, 7]
    a, used_a = V.read_frames(clips[clip], idx, decoder="decord", size=size)
    b, used_b = V.read_frames(clips[clip], idx, decoder="pyav", size=size)
    assert (used_a, used_b) == ("decord", "pyav")
    assert a.shape == b.shape
    assert int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) == 0
    assert V.probe(clips[clip], "decord") == V.probe(clips[clip], "pyav")


@pytest.mark.parametrize("clip", ["mkv", "avi"])
def test_other_containers(clips, clip):
    results = {}
    for decoder in DECODERS:
        info = V.probe(clips[clip], decoder=decoder)
        assert (info.num_frames, info.fps, info.width, info.height) == (90, 30.0, 320, 240)
        s = V.sample_frames(clips[clip], 8, decoder=decoder, size=None)
        assert [decode_counter(f) for f in s.frames] == s.indices
        results[decoder] = V.sample_frames(clips[clip], 8, decoder=decoder).frames
    if HAS_DECORD:
        assert np.array_equal(results["decord"], results["pyav"])


def test_auto_decoder(clips):
    """auto reads h264 in mp4 with PyAV (exact seeks), mpeg4 in AVI with the official reader."""
    assert V.sample_frames(clips["short"], 2).decoder == "pyav"
    assert V.sample_frames(clips["avi"], 2).decoder == ("decord" if HAS_DECORD else "pyav")


# ------------------------------------------------------------------------------------------------
# Fallback and errors


def test_fallback_when_decord_missing(clips, monkeypatch, caplog):
    monkeypatch.setattr(decode_module, "_import_decord", lambda: None)
    assert V.sample_frames(clips["short"], 2, decoder="auto").decoder == "pyav"
    with caplog.at_level(logging.WARNING, logger="sevila_tools.video"):
        s = V.sample_frames(clips["short"], 2, decoder="decord", size=None)
    assert s.decoder == "pyav" and [decode_counter(f) for f in s.frames] == s.indices
    assert any("PyAV" in r.getMessage() for r in caplog.records)


@needs_decord
def test_fallback_when_decord_fails(clips, monkeypatch, caplog):
    def broken_open(self, path, size):
        raise V._DecodeFailure(path, "simulated failure", "decord")

    monkeypatch.setattr(V._DecordReader, "__init__", broken_open)
    with caplog.at_level(logging.WARNING, logger="sevila_tools.video"):
        s = V.sample_frames(clips["avi"], 4, size=None)  # a file auto reads with decord
    assert s.decoder == "pyav"
    assert [decode_counter(f) for f in s.frames] == s.indices  # the same video, re-read
    assert any(
        "simulated failure" in r.getMessage() and "falling back" in r.getMessage() for r in caplog.records
    )


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    text = tmp / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    folder = tmp / "folder.mp4"
    folder.mkdir()
    clip = make_video(tmp / "full.mp4", num_frames=30)
    truncated = tmp / "truncated.mp4"  # mp4 written by PyAV keeps its index (moov) at the end
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    return {
        "missing": (tmp / "missing.mp4", "not found"),
        "directory": (folder, "is a directory"),
        "text": (text, "cannot decode video"),
        "zero-byte": (empty, "cannot decode video"),
        "truncated": (truncated, "cannot decode video"),
        "zero-frame": (make_zero_frame_video(tmp / "noframes.mp4"), "cannot decode video"),
        "zero-frame-mkv": (make_zero_frame_video(tmp / "noframes.mkv"), "cannot decode video"),
    }


@pytest.mark.parametrize("decoder", ["auto", "pyav"])
def test_bad_inputs_raise_video_error(tmp_path, decoder):
    for name, (path, phrase) in _bad_inputs(tmp_path).items():
        for call in (
            lambda p=path: V.probe(p, decoder=decoder),
            lambda p=path: V.sample_frames(p, 4, decoder=decoder),
            lambda p=path: V.read_frames(p, [0], decoder=decoder),
        ):
            with pytest.raises(VideoError) as info:
                call()
            msg = str(info.value)
            assert str(path) in msg and phrase in msg, (name, msg)
            assert "\n" not in msg, (name, msg)


@needs_decord
def test_decord_log_lines_kept_off_stderr(tmp_path, capfd):
    text = tmp_path / "garbage.mp4"
    text.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(VideoError):
        V.probe(text, decoder="decord")
    err = capfd.readouterr().err
    assert "video_reader.cc" not in err and "ERROR opening" not in err


def test_read_frames_errors(clips):
    with pytest.raises(VideoError, match="out of range"):
        V.read_frames(clips["short"], [0, 10])
    with pytest.raises(VideoError, match="out of range"):
        V.read_frames(clips["short"], [10], decoder="pyav")
    with pytest.raises(VideoError, match="out of range"):
        V.read_frames(clips["mkv"], [3, 95], decoder="pyav")  # no stored count: found while decoding
    with pytest.raises(InputError):
        V.read_frames(clips["short"], [-1])
    with pytest.raises(InputError):
        V.read_frames(clips["short"], [])
    with pytest.raises(InputError):
        V.read_frames(clips["short"], [0], decoder="opencv")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        V.read_frames(clips["short"], [0], size=0)
    with pytest.raises(InputError):
        V.sample_frames(clips["short"], 4, start=3.0, end=1.0)


# ------------------------------------------------------------------------------------------------
# preprocess


def test_preprocess_matches_numpy():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 8, 10, 3), dtype=np.uint8)
    ref = (frames.astype(np.float64) / 255.0 - np.array(V.CLIP_MEAN)) / np.array(V.CLIP_STD)
    ref = ref.transpose(0, 3, 1, 2)
    out = V.preprocess(frames)
    assert out.dtype == torch.float32 and tuple(out.shape) == (3, 3, 8, 10)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-5)
    assert torch.equal(V.preprocess(torch.from_numpy(frames)), out)
    assert V.CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert V.CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    with pytest.raises(InputError):
        V.preprocess(frames.astype(np.float32))
    with pytest.raises(InputError):
        V.preprocess(frames[0])


# ------------------------------------------------------------------------------------------------
# sevila_tools.synthetic helpers


def test_counter_roundtrip_uncompressed():
    for i in [0, 1, 2, 255, 256, 1000, 4095, 65535]:
        assert decode_counter(synthetic_frame(i, 70000, 320, 240)) == i
        assert decode_counter(synthetic_frame(i, 70000, 64, 48)) == i


def test_scene_video(tmp_path):
    scenes = [(20, (255, 0, 0)), (15, (0, 255, 0)), (25, (0, 0, 255))]
    path = make_scene_video(tmp_path / "scenes.mkv", scenes, fps=25)
    info = V.probe(path, decoder="pyav")
    assert (info.num_frames, info.fps) == (60, 25.0)
    frames, _ = V.read_frames(path, [10, 27, 50], decoder="pyav", size=None)
    for frame, (_, rgb) in zip(frames, scenes, strict=True):
        assert np.abs(frame.reshape(-1, 3).mean(0) - np.array(rgb)).max() < 12
    path = make_scene_video(tmp_path / "scenes_counter.mp4", scenes, counter=True)
    frames, _ = V.read_frames(path, [0, 21, 59], decoder="pyav", size=None)
    assert [decode_counter(f) for f in frames] == [0, 21, 59]


def test_synthetic_realistic_options(tmp_path):
    import av

    vfr = make_video(tmp_path / "vfr.mp4", num_frames=40, vfr=True, width=160, height=120)
    rot = make_video(tmp_path / "rot.mp4", num_frames=10, rotation=90, width=160, height=120)
    real = make_realistic_video(tmp_path / "real.mp4", width=160, height=96, seconds=2.0, fps=25)
    with av.open(str(vfr)) as c:
        pts = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
        steps = {b - a for a, b in zip(sorted(pts)[:-1], sorted(pts)[1:], strict=True)}
        assert len(pts) == 40 and len(steps) > 1  # irregular frame durations
    assert V.probe(vfr, decoder="pyav").num_frames == 40
    frames, _ = V.read_frames(vfr, [0, 17, 39], decoder="pyav", size=None)
    assert [decode_counter(f) for f in frames] == [0, 17, 39]
    info = V.probe(rot, decoder="pyav")  # displayed upright: the decoded frame is 120 wide, 160 high
    assert (info.width, info.height) == (120, 160)
    frames, _ = V.read_frames(rot, [3], decoder="pyav", size=None)
    assert decode_counter(np.rot90(frames[0], k=-1)) == 3
    with av.open(str(real)) as c:
        types = [int(f.pict_type) for f in c.decode(video=0)]
    assert len(types) == 50 and types.count(3) > 20 and types.count(1) == 1  # B-frames, one GOP of keyint 250
