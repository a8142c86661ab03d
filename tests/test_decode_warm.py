"""Warm decode workers for long-lived processes: started ahead of the first video, used by the reads, and
stopped (no process left behind) when the last holder closes: tool service, web page, garbage collection."""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from sevila_tools import video as V
from sevila_tools.synthetic import make_realistic_video
from sevila_tools.video import parallel, workers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("warm")
    return make_realistic_video(folder / "real.mp4", width=160, height=120, seconds=4.0, gop_size=30)


@pytest.fixture(autouse=True)
def two_processes(monkeypatch):
    """Two decode processes by default (the calling one and one worker), whatever this machine's cores."""
    monkeypatch.setenv(parallel.WORKERS_ENV, "2")
    workers.close_shared_workers()
    yield
    workers.close_shared_workers()


def test_held_workers_serve_the_reads_and_stop_with_the_last_hold(clip):
    ref = V.sample_frames(clip, 16, workers=1)
    with V.WarmDecoders(workers=3) as first:
        pids = first.pids()
        assert len(pids) == 2 and all(_alive(p) for p in pids)  # started before any read
        second = V.WarmDecoders()
        got = V.sample_frames(clip, 16, workers=3)
        assert np.array_equal(got.frames, ref.frames) and got.indices == ref.indices
        assert set(workers.shared_worker_pids()) == set(pids)  # the read used them: no new process
        second.close()
        second.close()  # idempotent
        assert second.closed and not first.closed
        assert all(_alive(p) for p in pids)  # one hold left
    assert first.closed and workers.shared_worker_pids() == []
    assert not any(_alive(p) for p in pids)


def test_a_collected_hold_stops_the_workers():
    hold = V.WarmDecoders()
    pids = hold.pids()
    assert len(pids) == 1 and _alive(pids[0])
    del hold
    gc.collect()
    assert not _alive(pids[0]) and workers.shared_worker_pids() == []


def test_a_close_during_a_read_waits_for_the_read(clip, monkeypatch, caplog):
    """A holder closing while another thread reads: the workers stop when that read ends, never under it."""
    hold = V.WarmDecoders()
    pids = hold.pids()
    seen: dict[str, bool] = {}
    real_collect = workers.WorkerSet.collect

    def collect_after_a_close(self, timeout=None):
        if not seen:
            hold.close()  # e.g. the server shutting down from another thread, mid-read
            seen["alive"] = all(_alive(p) for p in pids)
        return real_collect(self, timeout)

    monkeypatch.setattr(workers.WorkerSet, "collect", collect_after_a_close)
    with caplog.at_level(logging.DEBUG, logger="sevila_tools.video"):
        got = V.sample_frames(clip, 16)
    assert seen == {"alive": True}
    assert not any("without seeking" in r.getMessage() for r in caplog.records)  # the split read finished
    assert np.array_equal(got.frames, V.sample_frames(clip, 16, workers=1).frames)
    assert not any(_alive(p) for p in pids) and workers.shared_worker_pids() == []


def test_the_tool_service_holds_warm_workers_until_closed(tiny_runtime, tmp_path):
    from sevila_tools.agents.service import ToolService

    svc = ToolService(tiny_runtime, allow_dirs=[tmp_path])
    pids = workers.shared_worker_pids()
    assert len(pids) == 1 and _alive(pids[0])  # warm before the first question
    svc.close()
    assert not _alive(pids[0]) and workers.shared_worker_pids() == []


def test_the_web_page_holds_warm_workers_while_it_is_served(tiny_runtime, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from sevila_tools.chain import SevilaChain
    from sevila_tools.web import WebDemo, app

    seen: list[list[int]] = []
    page = SimpleNamespace(launch=lambda **kw: seen.append(workers.shared_worker_pids()))
    monkeypatch.setattr(app, "build_app", lambda demo_svc: page)  # serving returns at once
    app.launch(WebDemo(SevilaChain(tiny_runtime), work_dir=tmp_path / "web"))
    assert len(seen) == 1 and len(seen[0]) == 1  # warm while serving
    assert not _alive(seen[0][0]) and workers.shared_worker_pids() == []
