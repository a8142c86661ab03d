"""Exact partial decoding of a frame subset: packet index, keyframe plan and seek-and-decode (PyAV), decord batches.

How frame indices are kept exact after a seek is explained in ``docs/video.md`` ("Parallel decoding").
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sevila_tools.video.base import logger

__all__ = [
    "PacketIndex",
    "Run",
    "RunDecoder",
    "SeekMismatch",
    "build_packet_index",
    "decode_runs",
    "decode_runs_kept",
    "plan_runs",
    "split_runs",
]


class SeekMismatch(Exception):
    """The decoded frames after a seek did not map onto frame indices exactly (caller falls back)."""


@dataclass(frozen=True)
class PacketIndex:
    """A video stream's frames in presentation order, from one demux pass (no decoding).

    Frame ``i`` (the ``i``-th frame in presentation order) has timestamp ``pts[i]`` and its packet sits at
    position ``decode_pos[i]`` in decode order; ``key_pos``/``key_pts``/``key_seek`` describe the keyframe
    packets in decode order (``key_seek`` is the timestamp to seek to, the packet's dts when known).
    """

    pts: tuple[int, ...]
    decode_pos: tuple[int, ...]
    key_pos: tuple[int, ...]
    key_pts: tuple[int, ...]
    key_seek: tuple[int, ...]

    @property
    def num_frames(self) -> int:
        return len(self.pts)


@dataclass(frozen=True)
class Run:
    """Frames decoded from one keyframe: start at packet ``key_pos``, stop once ``targets`` are out."""

    key: int  # position in PacketIndex.key_pos
    targets: tuple[int, ...]  # frame indices, increasing
    cost: int  # packets to decode: from the keyframe to the last target's packet


def build_packet_index(path: str | Path) -> PacketIndex | None:
    """Demux the first video stream of ``path`` once; None when exact index mapping is impossible.

    Exact mapping needs one non-empty packet per frame with a unique pts, no packet flagged discard or
    corrupt, and a first packet that is a keyframe holding the earliest pts (no leading pictures at the
    start of the stream). Then frame ``i`` of a sequential decode is the packet with the ``i``-th smallest pts.
    """
    import av  # noqa: PLC0415

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            rows: list[tuple[int, int, bool]] = []  # (pts, seek ts, keyframe) in decode order
            for packet in container.demux(stream):
                if packet.size == 0 and packet.pts is None:
                    continue  # the demuxer's final flush packet
                if packet.pts is None or packet.size == 0 or packet.is_discard or packet.is_corrupt:
                    logger.debug("no exact packet index for %s: unusable packet %s", path, packet)
                    return None
                seek_ts = packet.dts if packet.dts is not None else packet.pts
                rows.append((int(packet.pts), int(seek_ts), bool(packet.is_keyframe)))
    except Exception as exc:  # an unreadable file: the sequential reader reports it properly
        logger.debug("no packet index for %s: %s", path, exc)
        return None
    return _index_from_rows(rows, path)


def _index_from_rows(rows: list[tuple[int, int, bool]], path: str | Path) -> PacketIndex | None:
    if not rows or not rows[0][2]:
        return None
    order = sorted(range(len(rows)), key=lambda d: rows[d][0])
    pts = tuple(rows[d][0] for d in order)
    if any(a == b for a, b in zip(pts[:-1], pts[1:], strict=True)) or order[0] != 0:
        logger.debug("no exact packet index for %s: duplicate pts or leading pictures", path)
        return None
    keys = [d for d, row in enumerate(rows) if row[2]]
    return PacketIndex(
        pts=pts,
        decode_pos=tuple(order),
        key_pos=tuple(keys),
        key_pts=tuple(rows[d][0] for d in keys),
        key_seek=tuple(rows[d][1] for d in keys),
    )


def _key_for(index: PacketIndex, frame: int) -> int:
    """The last keyframe at or before ``frame``'s packet (decode order) that is not shown after it."""
    pos, pts = index.decode_pos[frame], index.pts[frame]
    k = bisect.bisect_right(index.key_pos, pos) - 1
    while k > 0 and index.key_pts[k] > pts:  # frame is a leading picture of keyframe k
        k -= 1
    return k


def plan_runs(index: PacketIndex, targets: list[int]) -> list[Run]:
    """Group sorted unique frame ``targets`` by the keyframe each must be decoded from, in decode order."""
    by_key: dict[int, list[int]] = {}
    for t in targets:
        by_key.setdefault(_key_for(index, t), []).append(t)
    runs = []
    for k in sorted(by_key):
        ts = sorted(by_key[k])
        last = max(index.decode_pos[t] for t in ts)
        runs.append(Run(key=k, targets=tuple(ts), cost=last - index.key_pos[k] + 1))
    return runs


def split_runs(runs: list[Run], parts: int) -> list[list[Run]]:
    """Cut ``runs`` (in order) into at most ``parts`` contiguous groups with the smallest largest cost."""
    if parts <= 1 or len(runs) <= 1:
        return [list(runs)] if runs else []
    lo, hi = max(r.cost for r in runs), sum(r.cost for r in runs)
    while lo < hi:  # binary search on the largest group cost
        mid = (lo + hi) // 2
        if len(_greedy(runs, mid)) <= parts:
            hi = mid
        else:
            lo = mid + 1
    return _greedy(runs, lo)


def _greedy(runs: list[Run], limit: int) -> list[list[Run]]:
    groups: list[list[Run]] = [[]]
    load = 0
    for r in runs:
        if groups[-1] and load + r.cost > limit:
            groups.append([])
            load = 0
        groups[-1].append(r)
        load += r.cost
    return groups


def decode_runs(path: str, size: int | None, index: PacketIndex, runs: list[Run]) -> dict[int, np.ndarray]:
    """Decode the targets of ``runs`` with PyAV (seek to each run's keyframe, decode forward).

    Pixels go through the sequential reader's filter graph. Non-reference frames that are not targets are
    not decoded (no other frame depends on them). Raises :class:`SeekMismatch` if the decoder's output
    does not match the index exactly.
    """
    with RunDecoder(path, size, index) as decoder:
        return decoder.decode(runs)


class RunDecoder:
    """:func:`decode_runs` over several calls on one open file; the decoder's position carries over, so runs
    given in file order continue without seeking where they can."""

    def __init__(self, path: str, size: int | None, index: PacketIndex) -> None:
        import av  # noqa: PLC0415

        from sevila_tools.video.decode import _FrameConverter  # noqa: PLC0415

        self.container = av.open(path)
        try:
            stream = self.container.streams.video[0]
            stream.thread_type = "NONE"  # one packet in, decoded now: per-packet skip settings apply exactly
            stream.codec_context.thread_count = 1
            conv = _FrameConverter(size, stream.time_base)
            self.state = _DecodeState(index, self.container, stream, conv, {})
        except BaseException:
            self.container.close()
            raise

    def decode(self, runs: list[Run], resume: bool = True) -> dict[int, np.ndarray]:
        """Frames of the targets of ``runs`` by index (:class:`SeekMismatch` if the output does not map).

        ``resume=False``: seek for the first run even if the previous call ended before it (runs out of order).
        """
        if not resume:
            self.state.pos = -1
        got: dict[int, np.ndarray] = {}
        self.state.got = got
        self.state.wanted = {t for run in runs for t in run.targets}
        for run in runs:
            self.state.run(run)
        return got

    def close(self) -> None:
        """Close the file."""
        self.container.close()

    def __enter__(self) -> RunDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_kept: tuple[tuple, RunDecoder] | None = (
    None  # a worker's open file, kept for its next piece of the same read
)


def decode_runs_kept(
    path: str, size: int | None, index: PacketIndex, runs: list[Run]
) -> dict[int, np.ndarray]:
    """:func:`decode_runs` keeping the file open for the next call on the same file (a worker's successive
    pieces of one read); for worker processes, which run one task at a time."""
    global _kept
    st = os.stat(path)
    key = (path, size, st.st_mtime_ns, st.st_size, index.num_frames)
    if _kept is None or _kept[0] != key:
        if _kept is not None:
            _kept[1].close()
        _kept = None
        _kept = (key, RunDecoder(path, size, index))
    try:
        return _kept[1].decode(runs, resume=False)
    except BaseException:
        _kept[1].close()
        _kept = None
        raise


class _DecodeState:
    """Decoder position across runs: continue when the next keyframe was already passed, else seek."""

    def __init__(self, index: PacketIndex, container: Any, stream: Any, conv: Any, got: dict) -> None:
        self.index = index
        self.container = container
        self.stream = stream
        self.conv = conv
        self.got = got
        self.pts_to_frame = {p: i for i, p in enumerate(index.pts)}
        self.packets: Any = None  # demux iterator positioned after the last packet sent
        self.pos = -1  # decode position of the last packet sent to the decoder
        self.last_out = -1  # frame index of the last frame the decoder returned
        self.floor = 0  # frames before this index are leading pictures of the seek keyframe: ignored
        self.expect_key = False  # the next frame at or after floor must be the keyframe sought to
        self.wanted: set[int] = set()  # targets of all runs not decoded yet

    def run(self, run: Run) -> None:
        need = [t for t in run.targets if t in self.wanted]
        if not need:
            return
        if self.index.key_pos[run.key] > self.pos:
            self._seek(run.key)
        ctx = self.stream.codec_context
        for packet in self.packets:
            frame_idx = self._frame_of(packet.pts) if packet.pts is not None else None
            if frame_idx is None:
                if packet.size == 0:
                    break
                raise SeekMismatch(f"packet with unknown pts {packet.pts}")
            self.pos = self.index.decode_pos[frame_idx]
            ctx.skip_frame = "DEFAULT" if frame_idx in self.wanted else "NONREF"
            for frame in ctx.decode(packet):
                self._take(frame)
            if all(t not in self.wanted for t in need):
                return
        ctx.skip_frame = "DEFAULT"
        for frame in ctx.decode(None):  # end of stream: drain the reorder buffer
            self._take(frame)
        self.pos = -1  # drained: the next run must seek
        missing = [t for t in need if t in self.wanted]
        if missing:
            raise SeekMismatch(f"frames {missing[:3]} never came out of the decoder")

    def _frame_of(self, pts: int) -> int | None:
        return self.pts_to_frame.get(int(pts))

    def _seek(self, key: int) -> None:
        index = self.index
        self.container.seek(index.key_seek[key], stream=self.stream, backward=True, any_frame=False)
        packets = self.container.demux(self.stream)
        target = index.key_pos[key]
        for packet in packets:  # landed on this keyframe or an earlier one: skip to it without decoding
            idx = self._frame_of(packet.pts) if packet.pts is not None else None
            if idx is None:
                raise SeekMismatch(f"seek landed on a packet with unknown pts {packet.pts}")
            pos = index.decode_pos[idx]
            if pos > target:
                raise SeekMismatch(f"seek to keyframe {target} landed later, at packet {pos}")
            if pos == target:
                self.packets = _prepend(packet, packets)
                break
        else:
            raise SeekMismatch(f"keyframe packet {target} not found after seeking")
        self.pos = target - 1
        self.last_out = -1
        self.floor = self._frame_of(index.key_pts[key]) or 0
        self.expect_key = True

    def _take(self, frame: Any) -> None:
        idx = self._frame_of(frame.pts) if frame.pts is not None else None
        if idx is None:
            raise SeekMismatch(f"decoded frame with unknown pts {frame.pts}")
        if idx < self.floor:
            return  # a leading picture of the keyframe we sought to: never a target of this run
        if idx <= self.last_out:
            raise SeekMismatch(f"decoder output out of presentation order ({idx} after {self.last_out})")
        if self.expect_key and (idx != self.floor or not frame.key_frame):
            raise SeekMismatch(f"first frame after the seek is {idx}, not keyframe {self.floor}")
        self.expect_key = False
        self.last_out = idx
        if idx in self.wanted:
            self.got[idx] = self.conv(frame)
            self.wanted.discard(idx)


def _prepend(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


def decord_batch(path: str, size: int | None, indices: list[int]) -> np.ndarray:
    """decord's ``get_batch`` on a subset of indices (a worker's share of a parallel read)."""
    from sevila_tools.video.decode import _DecordReader  # noqa: PLC0415

    return _DecordReader(Path(path), size).get(indices)
