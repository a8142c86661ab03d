"""Decode worker processes: fresh interpreters over socket pairs, one task at a time, crash- and timeout-safe."""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from sevila_tools.errors import VideoError

__all__ = [
    "Outcome",
    "WorkerSet",
    "close_shared_workers",
    "in_worker",
    "keep_shared_workers",
    "serve",
    "shared_worker_pids",
    "shared_workers",
]

_LIVE: weakref.WeakSet[WorkerSet] = weakref.WeakSet()
_IN_WORKER = False


def in_worker() -> bool:
    """True inside a decode worker process (reads there never start workers of their own)."""
    return _IN_WORKER


@dataclass
class Outcome:
    """What a task produced: ``ok`` and its return value, or not ``ok`` and the exception."""

    key: Any
    ok: bool
    value: Any


@dataclass
class _Worker:
    proc: subprocess.Popen
    conn: Connection
    key: Any = None
    label: str = ""
    deadline: float | None = None
    busy: bool = field(default=False)


def _child_env() -> dict[str, str]:
    """The parent's environment, with this package's folder first on PYTHONPATH (a source checkout works)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class WorkerSet:
    """Up to ``size`` worker processes; each runs one ``fn(*args)`` at a time.

    Workers are ``python -c`` children (never forked: safe next to threads, CUDA and unguarded scripts),
    started lazily and reused. A worker that dies or passes its task's deadline is killed and replaced,
    and that task's :class:`Outcome` carries a one-line :class:`VideoError`. Not thread-safe.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a worker set needs at least one worker")
        self.size = int(size)
        self._workers: list[_Worker] = []
        self._pid = os.getpid()
        _LIVE.add(self)

    def _own(self) -> list[_Worker]:
        """This process's workers; after a fork the parent's workers are forgotten here, never touched."""
        if self._pid != os.getpid():
            for w in self._workers:
                with contextlib.suppress(OSError):
                    w.conn.close()  # only this process's copy of the socket
            self._workers, self._pid = [], os.getpid()
        return self._workers

    @property
    def idle(self) -> int:
        """Tasks that :meth:`submit` can take now without waiting."""
        return self.size - sum(w.busy for w in self._own())

    @property
    def busy(self) -> int:
        """Tasks running now."""
        return sum(w.busy for w in self._own())

    def pids(self) -> list[int]:
        """Process ids of the live workers (busy ones first)."""
        self._prune()
        return [w.proc.pid for w in sorted(self._own(), key=lambda w: not w.busy)]

    def _prune(self) -> None:
        """Forget idle workers that died meanwhile (killed, out of memory), so no task is sent to them."""
        for w in [w for w in self._own() if not w.busy and w.proc.poll() is not None]:
            self._retire(w)

    def _spawn(self) -> _Worker:
        parent, child = socket.socketpair()
        code = f"from sevila_tools.video.workers import serve; serve({child.fileno()})"
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            pass_fds=(child.fileno(),),
            env=_child_env(),
            stdin=subprocess.DEVNULL,
        )
        child.close()
        worker = _Worker(proc=proc, conn=Connection(parent.detach()))
        self._workers.append(worker)
        return worker

    def start(self, count: int | None = None) -> None:
        """Start worker processes now (up to ``count``, default ``size``) so that later tasks skip start-up."""
        want = self.size if count is None else min(int(count), self.size)
        while len(self._own()) < want:
            self._spawn()

    def submit(
        self, key: Any, fn: Callable[..., Any], args: tuple, label: str = "", timeout: float | None = None
    ) -> None:
        """Run ``fn(*args)`` on an idle worker (``fn`` must be importable by name); needs ``idle > 0``."""
        self._prune()
        worker = next((w for w in self._own() if not w.busy), None)
        if worker is None:
            if len(self._workers) >= self.size:
                raise RuntimeError("no idle worker: collect results first")
            worker = self._spawn()
        worker.key, worker.label, worker.busy = key, label, True
        worker.deadline = None if timeout is None else time.monotonic() + timeout
        try:
            worker.conn.send((fn, args))
        except OSError:  # died while idle: the next collect() reports it for this task
            pass

    def collect(self, timeout: float | None = None) -> list[Outcome]:
        """Wait until at least one task finishes (or ``timeout`` s pass) and return the finished ones."""
        busy = [w for w in self._own() if w.busy]
        if not busy:
            return []
        now = time.monotonic()
        deadlines = [w.deadline - now for w in busy if w.deadline is not None]
        limit = min([timeout, *deadlines]) if timeout is not None else (min(deadlines) if deadlines else None)
        ready = wait([w.conn for w in busy], timeout=None if limit is None else max(0.0, limit))
        out = []
        for w in busy:
            if w.conn in ready:
                out.append(self._receive(w))
            elif w.deadline is not None and time.monotonic() >= w.deadline:
                self._retire(w)
                out.append(Outcome(w.key, False, VideoError(f"decoding timed out: {w.label}")))
        return out

    def _receive(self, w: _Worker) -> Outcome:
        try:
            ok, value = w.conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            code = self._retire(w)
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            msg = f"decode worker died ({how}) while reading {w.label or 'a video'}"
            return Outcome(w.key, False, VideoError(msg if isinstance(exc, EOFError) else f"{msg}: {exc}"))
        w.busy, w.deadline = False, None
        return Outcome(w.key, ok, value)

    def _retire(self, w: _Worker) -> int | None:
        """Kill and forget one worker; returns its exit code."""
        with contextlib.suppress(OSError):
            w.proc.kill()
        try:
            code = w.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        w.conn.close()
        self._workers.remove(w)
        return code

    def cancel_busy(self) -> None:
        """Kill the workers that are running a task (their results are no longer wanted)."""
        for w in [w for w in self._own() if w.busy]:
            self._retire(w)

    def close(self) -> None:
        """Stop every worker (busy ones are killed)."""
        for w in list(self._own()):
            if not w.busy:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
            self._retire_quietly(w)

    def _retire_quietly(self, w: _Worker) -> None:
        try:
            w.proc.wait(timeout=0 if w.busy else 2)
        except subprocess.TimeoutExpired:
            pass
        self._retire(w)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


@atexit.register
def _close_all() -> None:
    for ws in list(_LIVE):
        with contextlib.suppress(Exception):
            ws.close()


def serve(fd: int) -> None:
    """Worker main loop: receive ``(fn, args)``, send back ``(True, result)`` or ``(False, exception)``."""
    global _IN_WORKER
    _IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which then closes us
    conn = Connection(fd)
    with contextlib.suppress(Exception):  # the reader's library, loaded while no task waits
        import av  # noqa: F401, PLC0415
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, args = msg
        try:
            reply: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            reply = (False, _portable(exc))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


_shared_lock = threading.Lock()
_shared: WorkerSet | None = None
_close_when_free = False  # a close was asked for while a read held the workers


@contextlib.contextmanager
def shared_workers(size: int):
    """The process-wide worker set for single-video parallel reads, grown to ``size``; one user at a time."""
    global _shared, _close_when_free
    with _shared_lock:
        if _shared is None:
            _shared = WorkerSet(size)
        _shared.size = max(_shared.size, size)
        try:
            yield _shared
        finally:
            if _close_when_free:
                _close_when_free = False
                _shared.close()
                _shared = None


def _after_fork_in_child() -> None:
    """A forked child (e.g. a DataLoader worker) gets its own lock and starts its own workers if it needs any:
    the lock may have been held by another thread of the parent at the fork."""
    global _shared_lock, _close_when_free
    _shared_lock = threading.Lock()
    _close_when_free = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def shared_worker_pids() -> list[int]:
    """Process ids of the shared workers now alive (none before the first parallel read)."""
    with _shared_lock:
        return [] if _shared is None else _shared.pids()


def close_shared_workers() -> None:
    """Stop the shared workers (the next parallel read starts new ones); never waits for a read.

    If a read is using them, they stop when it ends. Safe from finalizers and from any thread.
    """
    global _shared, _close_when_free
    if not _shared_lock.acquire(blocking=False):
        _close_when_free = True
        return
    try:
        _close_when_free = False
        if _shared is not None:
            _shared.close()
            _shared = None
    finally:
        _shared_lock.release()


def keep_shared_workers() -> None:
    """Withdraw a close asked for during a read (a new holder wants the workers kept)."""
    global _close_when_free
    _close_when_free = False
