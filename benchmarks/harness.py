"""Benchmark plumbing: frame settings and batch sizes, medians, peak memory, and where the numbers came from."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sevila_tools.errors import InputError

GIB = 2**30

#: the paper's inference cost (SeViLA, Yu et al. 2023; one NVIDIA A6000, 32 frames -> 4 keyframes)
PAPER = {
    "gpu": "NVIDIA RTX A6000",
    "setting": "32:4",
    "sevila_s_per_sample": 3.28,
    "sevila_memory_gb": 7.98,
    "answerer_only_s_per_sample": 1.79,
}


@dataclass(frozen=True)
class Setting:
    """T candidate frames -> K keyframes."""

    frames: int
    keyframes: int

    @property
    def label(self) -> str:
        return f"{self.frames}:{self.keyframes}"


def parse_settings(text: str) -> list[Setting]:
    """``"32:4,16:4"`` -> settings; one-line :class:`InputError` on bad input."""
    out: list[Setting] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            t, k = (int(x) for x in part.split(":"))
        except ValueError:
            raise InputError(f"bad frame setting {part!r}: use FRAMES:KEYFRAMES, e.g. 32:4") from None
        if not (1 <= k <= t <= 256):
            raise InputError(f"bad frame setting {part!r}: need 1 <= keyframes <= frames <= 256")
        out.append(Setting(t, k))
    if not out:
        raise InputError("no frame setting given (e.g. --settings 32:4)")
    return list(dict.fromkeys(out))


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,8"`` -> ``[1, 8]``; one-line :class:`InputError` on bad input."""
    try:
        sizes = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"bad batch sizes {text!r}: use comma-separated integers, e.g. 1,8") from None
    if not sizes or any(not 1 <= b <= 256 for b in sizes):
        raise InputError(f"bad batch sizes {text!r}: need integers between 1 and 256")
    return sorted(set(sizes))


def stats(values: list[float], samples: int = 1) -> dict[str, float]:
    """Median, minimum and per-sample figures of repeated wall times (``samples`` per run)."""
    med = statistics.median(values)
    return {
        "s": round(med, 6),
        "min_s": round(min(values), 6),
        "runs": len(values),
        "s_per_sample": round(med / samples, 6),
        "samples_per_s": round(samples / med, 3) if med > 0 else float("inf"),
    }


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _vm_hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_record(kind: str, peak: int, base: int, **extra: float) -> dict[str, Any]:
    return {
        "kind": kind,
        "peak_bytes": int(peak),
        "peak_gib": round(peak / GIB, 3),
        "peak_gb": round(peak / 1e9, 3),
        "baseline_gib": round(base / GIB, 3),
        **extra,
    }


class PeakMemory:
    """Peak memory during a block: CUDA ``max_memory_allocated``, or the process peak RSS on CPU (Linux
    ``VmHWM`` reset through ``/proc/self/clear_refs``; a 2 ms polling thread where that is unavailable)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.result: dict[str, Any] = {}
        self._stop = threading.Event()
        self._peak = 0
        self._base = 0
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss())
            self._stop.wait(0.002)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = _rss()
        if not (_reset_hwm() and _vm_hwm() is not None):
            self._peak = self._base
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            reserved = round(torch.cuda.max_memory_reserved(self.device) / GIB, 3)
            self.result = _memory_record("cuda_max_memory_allocated", peak, self._base, reserved_gib=reserved)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.result = _memory_record("process_rss_polled", max(self._peak, _rss()), self._base)
        else:
            self.result = _memory_record("process_rss_peak", _vm_hwm() or _rss(), self._base)


def max_memory(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """The record with the larger peak."""
    return b if a is None or b.get("peak_bytes", 0) > a.get("peak_bytes", 0) else a


def _cpu_model() -> tuple[str, set[str]]:
    cpu_model, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu_model in ("unknown", "", platform.processor()):
                cpu_model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    return cpu_model, flags


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """Where the numbers came from: CPU model, cores, memory, load, library versions, GPU."""
    import psutil
    import transformers

    cpu_model, flags = _cpu_model()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": cpu_model,
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma"}),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(psutil.virtual_memory().total / GIB, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
    }
    for mod in ("av", "decord"):
        with contextlib.suppress(Exception):
            info[mod] = __import__(mod).__version__
    info["cuda"] = None
    if torch.cuda.is_available():
        dev = device if device is not None and device.type == "cuda" else torch.device("cuda")
        props = torch.cuda.get_device_properties(dev)
        info["cuda"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / GIB, 1),
            "cuda_version": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return info


def load_average() -> list[float]:
    """The 1/5/15-minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


__all__ = [
    "GIB",
    "PAPER",
    "PeakMemory",
    "Setting",
    "load_average",
    "machine_info",
    "max_memory",
    "parse_batch_sizes",
    "parse_settings",
    "stats",
    "sync",
]
