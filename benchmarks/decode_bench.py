"""Decoding speed of the default path (``sample_frames(path, 32)``) against one decord reader (table + JSON).

Usage: ``python benchmarks/decode_bench.py [--seconds 120,600] [--frames 32] [--repeats 7] [--json out.json]``.
Clips are generated once (x264 veryfast crf 23, keyint 250, 3 B-frames, 640x360, 30 fps) into ``--videos``.
Every ratio is taken pair by pair (the configuration and one decord reader timed back to back, order
alternating) and reported as min / median / max over the repeats, with the load average beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sevila_tools import video
from sevila_tools.synthetic import make_realistic_video
from sevila_tools.video import parallel

BASELINE = ("decord, 1 reader", {"decoder": "decord"})
CONFIGS = [
    ("default: sample_frames(path, n)", {}),
    ("auto, workers=1 (in this process)", {"workers": 1}),
    ("pyav, workers=2 (static split)", {"decoder": "pyav", "workers": 2}),
]


def clip_path(folder: Path, seconds: float, width: int, height: int) -> Path:
    """The benchmark clip of that length and size, generated when missing."""
    path = folder / f"h264_{width}x{height}_{int(seconds)}s_keyint250_b3.mp4"
    if not path.exists():
        tmp = path.with_suffix(".part.mp4")
        make_realistic_video(tmp, width=width, height=height, seconds=seconds)
        tmp.rename(path)
    return path


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def _children_cpu() -> dict[int, float]:
    """CPU seconds used so far by each live child process (the decode workers)."""
    import psutil  # noqa: PLC0415

    out = {}
    for child in psutil.Process().children():
        try:
            t = child.cpu_times()
            out[child.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _timed(path: Path, frames: int, kwargs: dict[str, Any]) -> tuple[float, float, float]:
    """One first read of ``path`` (stream facts and packet index not cached): wall seconds, CPU seconds of all
    processes, and CPU seconds on the critical path (this process or the busiest worker, whichever is more)."""
    parallel.clear_cache()
    before = _children_cpu()
    cpu0, start = time.process_time(), time.perf_counter()
    video.sample_frames(path, frames, **kwargs)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    used = [t - before.get(pid, 0.0) for pid, t in _children_cpu().items()]
    return wall, cpu + sum(used), max([cpu, *used])


def time_clip(path: Path, frames: int, repeats: int) -> dict[str, Any]:
    """Paired ratios of each configuration to one decord reader (worker processes already started).

    ``cpu_ratio``: CPU of all processes against decord's; ``cpu_path_ratio``: CPU on the critical path against
    decord's, about the wall-time ratio on an otherwise idle machine with a core per process.
    """
    base_label, base_kw = BASELINE
    ref = video.sample_frames(path, frames, **base_kw)  # warm-up: file cache, worker start-up
    rows = []
    load0 = os.getloadavg()[0]
    for label, kwargs in CONFIGS:
        got = video.sample_frames(path, frames, **kwargs)
        diff = int(np.abs(got.frames.astype(np.int16) - ref.frames.astype(np.int16)).max())
        pairs = []
        for r in range(repeats):
            order = [kwargs, base_kw] if r % 2 == 0 else [base_kw, kwargs]
            t = {id(kw): _timed(path, frames, kw) for kw in order}
            pairs.append((t[id(kwargs)], t[id(base_kw)]))
        rows.append({"config": label, "kwargs": kwargs, "decoder_used": got.decoder, "max_abs_diff_vs_decord": diff,
                     "s": _spread([a[0] for a, _ in pairs]), "decord_s": _spread([b[0] for _, b in pairs]),
                     "ratio": _spread([a[0] / b[0] for a, b in pairs]),
                     "cpu_ratio": _spread([a[1] / b[1] for a, b in pairs]),
                     "cpu_path_ratio": _spread([a[2] / b[2] for a, b in pairs])})  # fmt: skip
    info = video.probe_video(path)
    return {"video": path.name, "frames_in_video": info.num_frames, "seconds": round(info.duration, 1),
            "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)], "rows": rows}  # fmt: skip


_CHILD = """
import json, sys, time
from sevila_tools import video
first, path, frames, decord_first, server = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5] == "1"
hold = video.WarmDecoders() if server else None
if server:
    video.sample_frames(first, frames)  # the server's first question, on another video
out = {}
for kw in ([{"decoder": "decord"}, {}] if decord_first else [{}, {"decoder": "decord"}]):
    t = time.perf_counter(); video.sample_frames(path, frames, **kw); out[kw.get("decoder", "default")] = time.perf_counter() - t
print(json.dumps(out))
"""


def fresh_process(first: Path, path: Path, frames: int, repeats: int, server: bool) -> dict[str, Any]:
    """Ratios in fresh interpreters: ``server`` = a process holding warm workers, on its second new video;
    else a one-shot program's first read (worker start-up included). One new copy of the clip per repeat."""
    ratios, load0 = [], os.getloadavg()[0]
    for r in range(repeats):
        copy = path.with_name(f"new_{r}_{path.name}")
        shutil.copyfile(path, copy)
        try:
            args = [str(first), str(copy), str(frames), str(r % 2), "1" if server else "0"]
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=True
            )
            t = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            copy.unlink()
        ratios.append((t["default"], t["decord"]))
    load = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return {"video": path.name, "s": _spread([a for a, _ in ratios]), "decord_s": _spread([b for _, b in ratios]),
            "ratio": _spread([a / b for a, b in ratios]), "load_avg": load}  # fmt: skip


def machine() -> dict[str, Any]:
    """CPU, cores, load and library versions."""
    import av  # noqa: PLC0415

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"
    )
    decord = __import__("decord").__version__ if video.decord_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": parallel.usable_cores(),
            "default_workers": parallel.default_workers(), "load_avg": list(os.getloadavg()),
            "python": platform.python_version(), "av": av.__version__, "decord": decord,
            "platform": platform.platform()}  # fmt: skip


def _fmt(d: dict[str, float], unit: str = "") -> str:
    return f"{d['median']:.2f}{unit} ({d['min']:.2f}-{d['max']:.2f})"


def table(report: dict[str, Any]) -> str:
    """Markdown: median (min-max) of paired ratios, load at start and end of each block."""
    lines = [
        "| video | path | wall s | one decord reader s | ratio | CPU ratio | critical-path CPU ratio | load | diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in report["results"]:
        for row in res["rows"]:
            lines.append(f"| {res['video']} | {row['config']} | {_fmt(row['s'])} | {_fmt(row['decord_s'])} "
                         f"| **{_fmt(row['ratio'], 'x')}** | {_fmt(row['cpu_ratio'], 'x')} "
                         f"| {_fmt(row['cpu_path_ratio'], 'x')} | {res['load_avg'][0]}-{res['load_avg'][1]} "
                         f"| {row['max_abs_diff_vs_decord']} |")  # fmt: skip
    for key, label in (
        ("cold", "first read of a fresh program"),
        ("server", "second new video, warm server"),
    ):
        for res in report.get(key, []):
            lines.append(f"| {res['video']} | {label} | {_fmt(res['s'])} | {_fmt(res['decord_s'])} "
                         f"| **{_fmt(res['ratio'], 'x')}** | | | {res['load_avg'][0]}-{res['load_avg'][1]} | |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--videos", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "sevila_decode_bench"
    )
    ap.add_argument("--seconds", default="120,600", help="clip lengths, comma-separated")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument(
        "--fresh-repeats", type=int, default=5, help="fresh-process runs (cold and server); 0 skips"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    args.videos.mkdir(parents=True, exist_ok=True)
    clips = [clip_path(args.videos, float(s), width, height) for s in args.seconds.split(",")]
    report: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "machine": machine(),
                              "frames": args.frames, "repeats": args.repeats}  # fmt: skip
    report["results"] = [time_clip(p, args.frames, args.repeats) for p in clips]
    if args.fresh_repeats:
        first = clips[-1]
        report["cold"] = [fresh_process(first, clips[0], args.frames, args.fresh_repeats, server=False)]
        report["server"] = [fresh_process(first, clips[0], args.frames, args.fresh_repeats, server=True)]
    report["load_avg_end"] = list(os.getloadavg())
    print(table(report))
    print(json.dumps(report["machine"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
