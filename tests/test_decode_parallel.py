"""Parallel decoding: single-video reads split across processes (bit-identical) and the DecodePool."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from sevila_tools import video as V
from sevila_tools.errors import InputError, VideoError
from sevila_tools.synthetic import decode_counter, make_realistic_video, make_video
from sevila_tools.video import parallel, seek, workers
from sevila_tools.video.pool import DecodePool, DecodeSpec

HAS_DECORD = V.decord_available()
DECODERS = ["decord", "pyav"] if HAS_DECORD else ["pyav"]
SMALL = {"width": 160, "height": 120}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("parallel_clips")
    return {
        "h264": make_video(d / "h264.mp4", num_frames=120, gop_size=15, bframes=3, **SMALL),
        "mpeg4": make_video(d / "mpeg4.mp4", num_frames=90, gop_size=12, codec="mpeg4", bframes=2, **SMALL),
        "vfr": make_video(d / "vfr.mp4", num_frames=80, gop_size=10, vfr=True, **SMALL),
        "rot": make_video(d / "rot.mp4", num_frames=60, gop_size=10, rotation=90, **SMALL),
        "real": make_realistic_video(d / "real.mp4", seconds=4.0, gop_size=40, **SMALL),
        "mkv": make_video(d / "clip.mkv", num_frames=60, gop_size=10, bframes=2, **SMALL),
    }


def _used_parallel(caplog: pytest.LogCaptureFixture) -> bool:
    text = " ".join(r.getMessage() for r in caplog.records)
    return "parallel read of" in text and "reading sequentially" not in text


# ------------------------------------------------------------------------------------------------
# Single video, several workers: the same pixels as the sequential reader


@pytest.mark.parametrize("clip", ["h264", "mpeg4", "vfr", "rot", "real", "mkv"])
@pytest.mark.parametrize("decoder", DECODERS)
def test_parallel_read_is_bit_identical(clips, clip, decoder, caplog):
    n = V.probe(clips[clip], decoder="pyav").num_frames
    rng = np.random.default_rng(0)
    subsets = [list(range(n)), sorted(rng.choice(n, 11, replace=False).tolist()) + [5, 5, n - 1]]
    split = not (decoder == "decord" and clip == "mpeg4")  # decord's seeks are off there: not split
    for size in (None, 224):
        for idx in subsets:
            ref, used = V.read_frames(clips[clip], idx, decoder=decoder, size=size)
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="sevila_tools.video"):
                got, used_p = V.read_frames(clips[clip], idx, decoder=decoder, size=size, workers=2)
            assert used_p == used == decoder
            assert _used_parallel(caplog) == split, [r.getMessage() for r in caplog.records]
            assert got.shape == ref.shape and np.array_equal(got, ref)
            if size is None and clip != "rot" and split:
                assert [decode_counter(f) for f in got] == idx


@pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")
def test_decord_mpeg4_b_frames_are_not_split(clips):
    """decord returns shifted frames after a seek in mpeg4 with B-frames (its bug, sequential reads too):
    a split would change which frames come back, so that case stays sequential."""
    idx = [0, 1, 46, 47]
    seq, _ = V.read_frames(clips["mpeg4"], idx, decoder="decord", size=None)
    assert [decode_counter(f) for f in seq] != idx  # the decord bug itself, documented in docs/video.md
    assert np.array_equal(V.read_frames(clips["mpeg4"], idx, decoder="decord", size=None, workers=2)[0], seq)
    good, _ = V.read_frames(clips["mpeg4"], idx, decoder="pyav", size=None, workers=2)
    assert [decode_counter(f) for f in good] == idx


@pytest.mark.parametrize("decoder", DECODERS)
def test_sample_frames_with_workers(clips, decoder):
    for kwargs in ({}, {"start": 0.5, "end": 3.0}, {"mode": "random", "seed": 4}):
        ref = V.sample_frames(clips["h264"], 16, decoder=decoder, **kwargs)
        got = V.sample_frames(clips["h264"], 16, decoder=decoder, workers=3, **kwargs)
        assert got.indices == ref.indices and got.decoder == ref.decoder
        assert np.array_equal(got.frames, ref.frames)
    s = V.frames_at_times(clips["vfr"], [0.1, 1.0, 2.5], decoder=decoder, workers=2)
    assert np.array_equal(s.frames, V.frames_at_times(clips["vfr"], [0.1, 1.0, 2.5], decoder=decoder).frames)


def test_parallel_errors_match_the_sequential_reader(clips):
    with pytest.raises(VideoError, match="out of range"):
        V.read_frames(clips["h264"], [0, 500], decoder="pyav", workers=2)
    with pytest.raises(InputError):
        V.read_frames(clips["h264"], [0, 1], workers=0)
    with pytest.raises(InputError):
        V.sample_frames(clips["h264"], 4, workers=True)  # type: ignore[arg-type]


def test_failed_workers_fall_back_to_the_sequential_read(clips, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise VideoError("decode worker died (killed by signal 9) while reading x")

    monkeypatch.setattr(parallel, "_run_all", broken)
    ref, _ = V.read_frames(clips["h264"], [3, 40, 100], decoder="pyav")
    with caplog.at_level(logging.DEBUG, logger="sevila_tools.video"):
        got, used = V.read_frames(clips["h264"], [3, 40, 100], decoder="pyav", workers=2)
    assert used == "pyav" and np.array_equal(got, ref)
    assert any("reading sequentially" in r.getMessage() for r in caplog.records)


def test_shared_workers_survive_a_fork(clips):
    idx = [3, 40, 100, 110]
    ref, _ = V.read_frames(clips["h264"], idx, decoder="pyav")
    assert np.array_equal(V.read_frames(clips["h264"], idx, decoder="pyav", workers=2)[0], ref)
    parent_workers = set(workers._shared.pids())
    pid = os.fork()  # e.g. a DataLoader worker: it must not talk to the parent's decode workers
    if pid == 0:
        try:
            ok = np.array_equal(V.read_frames(clips["h264"], idx, decoder="pyav", workers=2)[0], ref)
            own = set(workers._shared.pids())
            os._exit(0 if ok and own and not own & parent_workers else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert np.array_equal(V.read_frames(clips["h264"], idx, decoder="pyav", workers=2)[0], ref)
    assert set(workers._shared.pids()) == parent_workers


def test_single_gop_is_read_sequentially(clips, caplog):
    with caplog.at_level(logging.DEBUG, logger="sevila_tools.video"):
        V.read_frames(clips["h264"], [1, 2, 9], decoder="pyav", workers=2)  # one keyframe run: no split
    assert not any("parallel read of" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------
# Packet index and plan (pure parts)


def test_packet_index_maps_presentation_order(clips):
    index = seek.build_packet_index(clips["h264"])
    assert index is not None and index.num_frames == 120 and list(index.pts) == sorted(index.pts)
    assert index.key_pos == tuple(range(0, 120, 15))
    assert sorted(index.decode_pos) == list(range(120)) and index.decode_pos != tuple(range(120))  # B-frames


def test_index_refuses_streams_it_cannot_map():
    rows = [(0, 0, True), (2, 1, False), (1, 2, False), (3, 3, True)]
    assert seek._index_from_rows(rows, "x") is not None
    assert seek._index_from_rows([(1, 0, True), (0, 1, False)], "x") is None  # leading picture at the start
    assert seek._index_from_rows([(0, 0, True), (1, 1, False), (1, 2, False)], "x") is None  # duplicate pts
    assert seek._index_from_rows([(0, 0, False), (1, 1, True)], "x") is None  # no keyframe first


def test_plan_sends_leading_pictures_to_the_previous_keyframe():
    # decode order: K0(pts 0) P(3) B(1) B(2) K1(pts 6) B(4) B(5): open GOP, 4 and 5 lead keyframe 1
    rows = [
        (0, 0, True),
        (3, 1, False),
        (1, 2, False),
        (2, 3, False),
        (6, 4, True),
        (4, 5, False),
        (5, 6, False),
    ]
    index = seek._index_from_rows(rows, "x")
    runs = seek.plan_runs(index, [1, 4, 6])
    assert [(r.key, r.targets) for r in runs] == [(0, (1, 4)), (1, (6,))]
    assert runs[0].cost == 6  # packets 0..5
    runs = [seek.Run(key=k, targets=(k,), cost=c) for k, c in enumerate([5, 1, 1, 5, 4, 4])]
    assert [[r.key for r in g] for g in seek.split_runs(runs, 2)] == [[0, 1, 2, 3], [4, 5]]  # 12 + 8
    assert len(seek.split_runs(runs, 10)) <= 6 and seek.split_runs(runs[:1], 4) == [runs[:1]]


def test_decode_runs_detects_a_wrong_index(clips):
    index = seek.build_packet_index(clips["h264"])
    shifted = seek.PacketIndex(
        pts=index.pts[1:] + (index.pts[-1] + 1,), decode_pos=index.decode_pos, key_pos=index.key_pos,
        key_pts=index.key_pts, key_seek=index.key_seek,
    )  # fmt: skip
    with pytest.raises(seek.SeekMismatch):
        seek.decode_runs(str(clips["h264"]), None, shifted, seek.plan_runs(shifted, [20, 50]))


# ------------------------------------------------------------------------------------------------
# DecodePool


def test_pool_yields_in_order_with_errors(clips, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_text("not a video\n" * 40)
    specs = [
        clips["h264"],
        str(garbage),
        DecodeSpec(clips["vfr"], 8, start=0.5, end=2.0),
        DecodeSpec(clips["mpeg4"], indices=[80, 2, 2]),
        DecodeSpec(clips["rot"], times=[0.0, 1.5]),
        tmp_path / "missing.mp4",
        DecodeSpec(clips["h264"], 4, start=3.0, end=1.0),  # reversed window, "raise"
        DecodeSpec(clips["h264"], 4, start=3.0, end=1.0, empty_window="start_frame"),
    ]
    with DecodePool(workers=2, decoder="pyav", max_pending=3) as pool:
        out = list(pool.imap(specs))
    assert len(out) == len(specs)
    assert (
        isinstance(out[1], VideoError)
        and "cannot decode video" in str(out[1])
        and str(garbage) in str(out[1])
    )
    assert isinstance(out[5], VideoError) and "not found" in str(out[5])
    assert isinstance(out[6], InputError)
    expected = {
        0: V.sample_frames(clips["h264"], 32, decoder="pyav"),
        2: V.sample_frames(clips["vfr"], 8, start=0.5, end=2.0, decoder="pyav"),
        4: V.frames_at_times(clips["rot"], [0.0, 1.5], decoder="pyav"),
        7: V.sample_frames(clips["h264"], 4, 3.0, 1.0, decoder="pyav", empty_window="start_frame"),
    }
    for i, ref in expected.items():
        assert out[i].indices == ref.indices and np.array_equal(out[i].frames, ref.frames)
    assert out[7].empty_window
    assert out[3].indices == [80, 2, 2] and out[3].num_video_frames == 90
    assert np.array_equal(out[3].frames, V.read_frames(clips["mpeg4"], [80, 2, 2], decoder="pyav")[0])


def test_pool_holds_at_most_max_pending(clips):
    pool = DecodePool(workers=2, decoder="pyav", max_pending=3)
    seen: list[int] = []

    def specs():
        for i in range(10):
            seen.append(pool.pending)
            yield DecodeSpec(clips["h264"], 4, seed=i, mode="random")

    try:
        for result in pool.imap(specs()):
            assert isinstance(result, V.SampledFrames)
            assert pool.pending <= 3
        assert max(seen) <= 3 and len(seen) == 10
    finally:
        pool.close()


def test_killed_worker_gives_one_error_and_the_pool_goes_on(clips):
    pool = DecodePool(workers=2, decoder="pyav", max_pending=4)
    killed: list[int] = []

    def specs():
        yield DecodeSpec(clips["h264"], 32)
        pid = pool.worker_pids(busy_only=True)[0]  # the worker that holds item 0
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        yield from [DecodeSpec(clips["vfr"], 4), DecodeSpec(clips["mpeg4"], 4)]

    try:
        out = list(pool.imap(specs()))
        assert isinstance(out[0], VideoError)
        assert "decode worker died (killed by signal 9)" in str(out[0]) and str(clips["h264"]) in str(out[0])
        assert [type(r) for r in out[1:]] == [V.SampledFrames, V.SampledFrames]
        assert killed[0] not in pool.worker_pids()
        again = list(pool.imap([clips["h264"]]))  # the pool keeps working
        assert np.array_equal(again[0].frames, V.sample_frames(clips["h264"], 32, decoder="pyav").frames)
    finally:
        pool.close()


def test_pool_timeout_and_abandoned_iteration(clips):
    with DecodePool(workers=1, decoder="pyav", timeout=0.001) as pool:  # less than a worker's start-up
        out = list(pool.imap([clips["h264"], clips["vfr"]]))
    assert all(isinstance(r, VideoError) and "timed out" in str(r) for r in out)
    with DecodePool(workers=2, decoder="pyav", max_pending=4) as pool:
        for _ in pool.imap([clips["h264"]] * 6):
            break  # abandoned with work in flight
        assert pool.pending == 0
        out = list(pool.imap([clips["vfr"], clips["mpeg4"]]))
        assert [r.num_video_frames for r in out] == [80, 90]
        pids = pool.worker_pids()
    for pid in pids:  # closed: no worker left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_pool_rejects_bad_settings():
    for kwargs in ({"workers": 0}, {"decoder": "opencv"}, {"max_pending": 0}, {"size": 0}, {"timeout": 0}):
        with pytest.raises(InputError):
            DecodePool(**kwargs)  # type: ignore[arg-type]
