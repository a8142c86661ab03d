"""``decoder="auto"``, the default: decord's frames wherever decord is right, the right frame where it is
late, cache keys shared only between equal frames, and the default number of decode processes."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from sevila_tools import video as V
from sevila_tools.encoding import FrameSpec, encoding_key
from sevila_tools.errors import InputError
from sevila_tools.synthetic import decode_counter, make_realistic_video, make_video, synthetic_frame
from sevila_tools.video import auto, parallel, workers
from sevila_tools.video import decode as decode_module

HAS_DECORD = V.decord_available()
needs_decord = pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")
SMALL = {"width": 160, "height": 120}


def _encode(path: Path, codec: str, pix_fmt: str = "yuv420p", bframes: int = 0, options=None) -> Path:
    """A 72-frame counter clip in any PyAV codec (for codecs that make_video does not offer)."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=30, options=options or {})
    stream.width, stream.height, stream.pix_fmt, stream.gop_size = 160, 120, pix_fmt, 12
    stream.codec_context.max_b_frames = bframes
    for i in range(72):
        frame = av.VideoFrame.from_ndarray(synthetic_frame(i, 72, 160, 120), format="rgb24")
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("auto_clips")
    x264 = {"preset": "veryfast", "bf": "3", "b_strategy": "0", "keyint_min": "1", "sc_threshold": "0"}
    return {
        "h264": make_video(d / "h264.mp4", num_frames=120, gop_size=15, bframes=3, **SMALL),
        "vfr": make_video(d / "vfr.mp4", num_frames=80, gop_size=10, vfr=True, **SMALL),
        "rot": make_video(d / "rot.mp4", num_frames=60, gop_size=10, rotation=90, **SMALL),
        "real": make_realistic_video(d / "real.mp4", seconds=4.0, gop_size=40, **SMALL),
        "mkv": make_video(d / "clip.mkv", num_frames=60, gop_size=10, bframes=2, **SMALL),
        "avi": make_video(d / "mpeg4.avi", num_frames=60, gop_size=10, codec="mpeg4", **SMALL),
        "mpeg4_b": make_video(d / "mpeg4_b.mp4", num_frames=90, gop_size=12, codec="mpeg4", bframes=2, **SMALL),
        "mpeg4_b_mkv": make_video(d / "mpeg4_b.mkv", num_frames=72, gop_size=12, codec="mpeg4", bframes=2, **SMALL),
        "mpeg2_b": _encode(d / "mpeg2_b.mp4", "mpeg2video", bframes=2),
        "h264_avi": make_video(d / "h264.avi", num_frames=72, gop_size=12, bframes=0, **SMALL),
        "h264_10bit": _encode(d / "h264_10bit.mp4", "libx264", "yuv420p10le", options=x264),
    }


def _sequential_rgb(path: Path) -> list[np.ndarray]:
    """Every frame in output order, decoded with PyAV directly (no seeking, no filter graph)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


# ------------------------------------------------------------------------------------------------
# Where decord is right: the same frames, read faster


@needs_decord
@pytest.mark.parametrize("clip", ["h264", "vfr", "rot", "real", "mkv", "avi", "h264_10bit"])
@pytest.mark.parametrize("size", [None, 224])
def test_auto_equals_the_official_reader(clips, clip, size):
    path = clips[clip]
    for kwargs in ({}, {"start": 0.4, "end": 1.7}, {"mode": "random", "seed": 3}):
        ref = V.sample_frames(path, 16, decoder="decord", size=size, **kwargs)
        for workers_ in (None, 1, 2, 3):
            got = V.sample_frames(path, 16, size=size, workers=workers_, **kwargs)
            assert (got.indices, got.fps, got.num_video_frames) == (ref.indices, ref.fps, ref.num_video_frames)
            assert np.array_equal(got.frames, ref.frames), (clip, kwargs, workers_)
    n = ref.num_video_frames
    idx = sorted(np.random.default_rng(1).choice(n, 9, replace=False).tolist()) + [4, 4, n - 1, 0]
    assert np.array_equal(V.read_frames(path, idx, size=size)[0], V.read_frames(path, idx, "decord", size)[0])
    assert V.probe(path) == V.probe(path, decoder="decord")
    seeks = clip not in ("avi", "h264_10bit")  # AVI has no real timestamps; 10-bit RGB differs at native size
    assert got.decoder == ("pyav" if seeks else "decord")
    assert (auto.auto_choice(path) == "seek") == seeks


def test_auto_frames_carry_their_index(clips):
    for clip in ("h264", "vfr", "mkv", "real"):
        s = V.sample_frames(clips[clip], 12, size=None)
        assert s.decoder == "pyav" and [decode_counter(f) for f in s.frames] == s.indices


# ------------------------------------------------------------------------------------------------
# Where decord returns a later frame after a seek: the default returns the right one


@pytest.mark.parametrize("clip", ["mpeg4_b", "mpeg4_b_mkv", "mpeg2_b", "h264_avi"])
def test_auto_returns_the_right_frame_where_decord_is_late(clips, clip):
    path = clips[clip]
    truth = _sequential_rgb(path)
    idx = [0, 1, 13, 25, 46, 47, 58, 25, len(truth) - 1]
    got, used = V.read_frames(path, idx, size=None)
    assert used == "pyav" and [decode_counter(f) for f in got] == idx
    assert all(np.array_equal(f, truth[i]) for f, i in zip(got, idx, strict=True))
    small, _ = V.read_frames(path, idx)
    assert np.array_equal(small, V.read_frames(path, idx, decoder="pyav", workers=1)[0])
    s = V.sample_frames(path, 8, size=None)
    assert [decode_counter(f) for f in s.frames] == s.indices
    if HAS_DECORD:  # the fault is real: decord's frame after a seek is another one
        late = [decode_counter(f) for f in V.read_frames(path, idx, decoder="decord", size=None)[0]]
        assert late != idx
        assert V.probe(path).num_frames == V.probe(path, decoder="decord").num_frames == len(truth)


# ------------------------------------------------------------------------------------------------
# Feature-cache keys


def test_cache_keys_are_shared_only_between_equal_frames(clips):
    def key(clip: str, decoder: str) -> str:
        return encoding_key(FrameSpec(str(clips[clip]), 8), decoder, "vit")

    official = "decord" if HAS_DECORD else "pyav"
    for clip in ("h264", "mkv", "avi"):  # auto gives decord's frames: decord's entries
        assert key(clip, "auto") == key(clip, official)
        assert "decoder=" + official in key(clip, "auto")
    for clip in ("mpeg4_b", "mpeg2_b", "h264_avi"):  # auto gives PyAV's frames: never decord's entries
        assert key(clip, "auto") == key(clip, "pyav")
        if HAS_DECORD:
            assert key(clip, "auto") != key(clip, "decord")


def test_without_decord_auto_reads_and_keys_as_pyav(clips, monkeypatch):
    monkeypatch.setattr(decode_module, "_import_decord", lambda: None)
    assert auto.auto_choice(clips["h264"]) == "seek"
    for clip in ("avi", "h264_avi", "h264_10bit"):
        assert auto.auto_choice(clips[clip]) == "pyav"
        assert auto.frame_source(clips[clip], "auto") == "pyav"
        assert V.sample_frames(clips[clip], 4).decoder == "pyav"


# ------------------------------------------------------------------------------------------------
# Processes: how many, which fallback


def test_default_number_of_processes(monkeypatch):
    monkeypatch.delenv(parallel.WORKERS_ENV, raising=False)
    cores = parallel.usable_cores()
    assert parallel.default_workers() == max(1, min(cores, parallel.MAX_DEFAULT_WORKERS))
    assert parallel.resolve_workers(None, "decord") == 1  # the official reader runs as officially
    assert parallel.resolve_workers(None, "auto") == parallel.default_workers()
    assert parallel.resolve_workers(3, "decord") == 3
    monkeypatch.setenv(parallel.WORKERS_ENV, "3")
    assert parallel.resolve_workers(None, "pyav") == 3
    monkeypatch.setenv(parallel.WORKERS_ENV, "two")
    with pytest.raises(InputError, match=parallel.WORKERS_ENV):
        parallel.default_workers()
    monkeypatch.delenv(parallel.WORKERS_ENV)
    daemon = SimpleNamespace(daemon=True)  # a DataLoader or pool worker: no processes below it
    monkeypatch.setattr(parallel.multiprocessing, "current_process", lambda: daemon)
    assert parallel.default_workers() == 1


def test_one_process_reads_in_place(clips):
    workers.close_shared_workers()
    s = V.sample_frames(clips["real"], 16, workers=1)
    assert s.decoder == "pyav" and workers.shared_worker_pids() == []
    assert np.array_equal(s.frames, V.sample_frames(clips["real"], 16, decoder="pyav").frames)


@pytest.mark.parametrize(("clip", "fallback"), [("h264", "decord"), ("mpeg4_b", "pyav")])
def test_a_failed_seek_read_falls_back_to_an_exact_reader(clips, clip, fallback, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("decode worker died")

    monkeypatch.setattr(parallel, "_share_runs", broken)
    idx = [3, 40, 47, 70]
    with caplog.at_level(logging.DEBUG, logger="sevila_tools.video"):
        got, used = V.read_frames(clips[clip], idx, size=None)
    assert used == (fallback if HAS_DECORD else "pyav")
    assert [decode_counter(f) for f in got] == idx
    assert any("reading without seeking" in r.getMessage() for r in caplog.records)


def test_a_worker_killed_mid_read_changes_nothing(clips, monkeypatch, caplog):
    """The worker holding a piece dies while this process decodes its own: the read is redone, same frames."""
    import os
    import signal

    from sevila_tools.video import seek

    monkeypatch.setenv(parallel.WORKERS_ENV, "2")
    ref = V.sample_frames(clips["real"], 16, workers=1)
    real_decode = seek.RunDecoder.decode
    killed: list[int] = []

    def decode_and_kill(self, runs):
        if not killed:
            killed.extend(workers._shared.pids())  # the read holds the shared set: no lock here
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
        return real_decode(self, runs)

    monkeypatch.setattr(seek.RunDecoder, "decode", decode_and_kill)
    with caplog.at_level(logging.DEBUG, logger="sevila_tools.video"):
        got = V.sample_frames(clips["real"], 16)
    assert killed and np.array_equal(got.frames, ref.frames) and got.indices == ref.indices
    assert any("decode worker died" in r.getMessage() for r in caplog.records)
    assert not set(killed) & set(workers.shared_worker_pids())  # replaced on the next read


def test_a_kept_decoder_takes_pieces_in_any_order(clips):
    """A worker keeps its file open across the pieces of one read, which come from the back of the file."""
    from sevila_tools.video import seek

    path = str(clips["real"])
    index = auto.packet_index(path)
    runs = seek.plan_runs(index, list(range(0, index.num_frames, 7)))
    pieces = seek.split_runs(runs, 4)
    assert len(pieces) >= 3
    ref = seek.decode_runs(path, 224, index, runs)
    got: dict[int, np.ndarray] = {}
    for piece in reversed(pieces):
        got.update(seek.decode_runs_kept(path, 224, index, piece))
    assert seek._kept is not None and seek._kept[0][0] == path  # one open file for all pieces
    assert sorted(got) == sorted(ref) and all(np.array_equal(got[i], ref[i]) for i in ref)
    other = seek.decode_runs_kept(str(clips["h264"]), None, auto.packet_index(clips["h264"]), runs[:0])
    assert other == {} and seek._kept[0][0] == str(clips["h264"])  # another file replaces it
