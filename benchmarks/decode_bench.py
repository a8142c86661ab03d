"""Decoding speed: one sequential reader vs split across worker processes (table + JSON).

Usage: ``python benchmarks/decode_bench.py [--seconds 120,600] [--frames 32] [--workers 2] [--json out.json]``.
Clips are generated once (x264 veryfast crf 23, keyint 250, 3 B-frames, 640x360, 30 fps) into ``--videos``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sevila_tools import video
from sevila_tools.synthetic import make_realistic_video
from sevila_tools.video import parallel, workers


def clip_path(folder: Path, seconds: float, width: int, height: int) -> Path:
    """The benchmark clip of that length and size, generated when missing."""
    path = folder / f"h264_{width}x{height}_{int(seconds)}s_keyint250_b3.mp4"
    if not path.exists():
        tmp = path.with_suffix(".part.mp4")
        make_realistic_video(tmp, width=width, height=height, seconds=seconds)
        tmp.rename(path)
    return path


def configs(workers: int) -> list[tuple[str, dict[str, Any]]]:
    """(label, sample_frames kwargs); the first one is the baseline (one decord reader)."""
    out = [("decord, 1 reader", {"decoder": "decord"}), ("pyav, 1 reader", {"decoder": "pyav"})]
    out += [(f"decord, workers={workers}", {"decoder": "decord", "workers": workers})]
    out += [(f"pyav, workers={workers}", {"decoder": "pyav", "workers": workers})]
    return out


def _worker_cpu() -> dict[int, float]:
    """CPU seconds used so far by each shared decode worker process."""
    import psutil  # noqa: PLC0415

    out = {}
    for pid in workers._shared.pids() if workers._shared is not None else []:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _timed(path: Path, frames: int, kwargs: dict[str, Any]) -> tuple[float, float]:
    """(wall s, critical-path CPU s) of one first read: parent CPU + the busiest worker's CPU."""
    parallel.clear_cache()  # a first read of the file: its packet index is built too
    before = _worker_cpu()
    cpu0, start = time.process_time(), time.perf_counter()
    video.sample_frames(path, frames, **kwargs)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    after = _worker_cpu()
    busiest = max((after[p] - before.get(p, 0.0) for p in after), default=0.0)
    return wall, cpu + busiest


def time_clip(path: Path, frames: int, workers_: int, repeats: int) -> dict[str, Any]:
    """Median wall time of each config (repeats interleaved) and the max pixel difference to the baseline.

    ``cpu_path_s`` is the CPU time on the critical path (calling process plus the busiest worker): about
    the wall time the read would take on an otherwise idle machine with a core per worker.
    """
    runs = configs(workers_)
    times: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in runs}
    outputs: dict[str, np.ndarray] = {}
    for label, kwargs in runs:  # warm-up: file cache, worker start-up (reported apart)
        outputs[label] = video.sample_frames(path, frames, **kwargs).frames
    for _ in range(repeats):
        for label, kwargs in runs:
            times[label].append(_timed(path, frames, kwargs))
    base_label = runs[0][0]
    base = statistics.median(t[0] for t in times[base_label])
    base_cpu = statistics.median(t[1] for t in times[base_label])
    rows = []
    for label, _ in runs:
        med = statistics.median(t[0] for t in times[label])
        cpu = statistics.median(t[1] for t in times[label])
        diff = int(np.abs(outputs[label].astype(np.int16) - outputs[base_label].astype(np.int16)).max())
        rows.append({"config": label, "median_s": round(med, 3), "ratio": round(med / base, 3),
                     "cpu_path_s": round(cpu, 3), "cpu_path_ratio": round(cpu / base_cpu, 3),
                     "runs_s": [round(t[0], 3) for t in times[label]], "max_abs_diff_vs_decord": diff})  # fmt: skip
    info = video.probe_video(path)
    return {"video": path.name, "frames_in_video": info.num_frames, "seconds": info.duration, "rows": rows}


def cold_start(path: Path, frames: int, workers: int) -> float:
    """Seconds of the first parallel call in a fresh interpreter (worker start-up included)."""
    code = (
        "import time; from sevila_tools import video; t = time.perf_counter(); "
        f"video.sample_frames({str(path)!r}, {frames}, decoder='pyav', workers={workers}); "
        "print(time.perf_counter() - t)"
    )
    import subprocess  # noqa: PLC0415

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 3)


def pool_throughput(path: Path, frames: int, workers: int, count: int, repeats: int) -> dict[str, Any]:
    """Videos per second over ``count`` copies: a plain loop of sample_frames vs DecodePool(workers).

    Repeats alternate loop and pool (medians), so that changes in machine load hit both alike.
    """
    loop_s, pool_s = [], []
    with video.DecodePool(workers=workers, max_pending=2 * workers) as pool:
        list(pool.imap([path] * workers))  # start-up of every worker
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(count):
                video.sample_frames(path, frames)
            loop_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            results = list(pool.imap([path] * count))
            pool_s.append(time.perf_counter() - start)
            assert all(isinstance(r, video.SampledFrames) for r in results)
    loop, pooled = statistics.median(loop_s), statistics.median(pool_s)
    return {"videos": count, "workers": workers, "loop_videos_per_s": round(count / loop, 3),
            "pool_videos_per_s": round(count / pooled, 3), "speedup": round(loop / pooled, 3)}  # fmt: skip


def machine() -> dict[str, Any]:
    import av  # noqa: PLC0415

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"
    )
    decord = __import__("decord").__version__ if video.decord_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg": list(os.getloadavg()), "python": platform.python_version(),
            "av": av.__version__, "decord": decord, "platform": platform.platform()}  # fmt: skip


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| video | config | wall s (median) | wall vs 1 decord reader | CPU on critical path s | CPU path vs decord "
        "| max abs diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for row in res["rows"]:
            lines.append(f"| {res['video']} | {row['config']} | {row['median_s']:.3f} | {row['ratio']:.2f}x "
                         f"| {row['cpu_path_s']:.3f} | {row['cpu_path_ratio']:.2f}x "
                         f"| {row['max_abs_diff_vs_decord']} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--videos", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "sevila_decode_bench"
    )
    ap.add_argument("--seconds", default="120,600", help="clip lengths, comma-separated")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pool-videos", type=int, default=6, help="0 skips the DecodePool throughput run")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    args.videos.mkdir(parents=True, exist_ok=True)
    clips = [clip_path(args.videos, float(s), width, height) for s in args.seconds.split(",")]
    report: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "machine": machine(),
                              "frames": args.frames, "workers": args.workers, "repeats": args.repeats}  # fmt: skip
    report["cold_start_s"] = cold_start(clips[0], args.frames, args.workers)
    report["results"] = [time_clip(p, args.frames, args.workers, args.repeats) for p in clips]
    if args.pool_videos:
        report["pool"] = pool_throughput(clips[0], args.frames, args.workers, args.pool_videos, args.repeats)
    report["load_avg_end"] = list(os.getloadavg())
    print(table(report["results"]))
    print(json.dumps({k: v for k, v in report.items() if k != "results"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
