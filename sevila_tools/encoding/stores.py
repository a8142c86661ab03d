"""Feature stores: an in-process LRU and a content-keyed safetensors folder (atomic writes)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sevila_tools.encoding.types import EncodedVideo
from sevila_tools.video import SampledFrames
from sevila_tools.video.base import check_decoder

log = logging.getLogger("sevila_tools.encoding")

CACHE_ENV = "SEVILA_CACHE_DIR"
FORMAT_VERSION = "2"


def default_cache_dir() -> Path:
    """``$SEVILA_CACHE_DIR`` if set, else ``~/.cache/sevila_tools/features``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "sevila_tools" / "features"


class _Counters:
    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.errors = 0
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def stats(self) -> dict[str, Any]:
        """Counters since construction."""
        return {"hits": self.hits, "misses": self.misses, "writes": self.writes, "errors": self.errors}


class MemoryStore(_Counters):
    """Encoded videos in memory, least recently used dropped beyond ``max_items`` (servers, agents, the web)."""

    def __init__(self, max_items: int = 16) -> None:
        super().__init__()
        self.max_items = max_items
        self._items: OrderedDict[str, EncodedVideo] = OrderedDict()
        self._lock_items = threading.Lock()

    def get(self, key: str) -> EncodedVideo | None:
        with self._lock_items:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
        self._count("misses" if item is None else "hits")
        return item

    def contains(self, key: str) -> bool:
        """Whether ``key`` is stored (no counters change)."""
        with self._lock_items:
            return key in self._items

    def put(self, key: str, value: EncodedVideo) -> None:
        with self._lock_items:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        self._count("writes")


def _lossless_storage(raw: torch.Tensor) -> torch.Tensor:
    """The smallest dtype among fp16/bf16/fp32 that represents ``raw`` exactly."""
    if raw.dtype in (torch.float16, torch.bfloat16):
        return raw
    for dtype in (torch.float16, torch.bfloat16):
        low = raw.to(dtype)
        if torch.isfinite(low).all() and torch.equal(low.to(raw.dtype), raw):
            return low
    return raw.to(torch.float32)


def _meta(key: str, value: EncodedVideo) -> dict[str, Any]:
    fr = value.frames
    return {
        "format": FORMAT_VERSION,
        "key": key,
        "video": str(value.video),
        "indices": [int(i) for i in fr.indices],
        "timestamps": [float(t) for t in fr.timestamps],
        "edges": [int(e) for e in fr.edges],
        "fps": float(fr.fps),
        "num_video_frames": int(fr.num_video_frames),
        "padded": bool(fr.padded),
        "decoder": str(fr.decoder),
    }


def _sampled(meta: dict[str, Any], frames: np.ndarray) -> SampledFrames:
    return SampledFrames(
        frames=np.ascontiguousarray(frames, dtype=np.uint8),
        indices=[int(i) for i in meta["indices"]],
        timestamps=[float(t) for t in meta["timestamps"]],
        edges=[int(e) for e in meta["edges"]],
        fps=float(meta["fps"]),
        num_video_frames=int(meta["num_video_frames"]),
        padded=bool(meta["padded"]),
        decoder=check_decoder(str(meta["decoder"])),
    )


class DiskStore(_Counters):
    """Encoded videos as ``<dir>/<2 hex>/<sha256 of key>.safetensors`` (raw features stored losslessly,
    uint8 frames, candidate metadata). Writes go to a temporary file renamed into place, so concurrent
    processes and killed runs never leave a torn entry; an unreadable entry is a miss and is removed.

    ``device``: where raw features go on a hit (the runtime's device)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"):
        super().__init__()
        self.dir = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.device = torch.device(device)

    def path_for(self, key: str) -> Path:
        """File of the entry for ``key``."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.dir / digest[:2] / f"{digest}.safetensors"

    def contains(self, key: str) -> bool:
        """Whether an entry file exists for ``key`` (no counters change)."""
        return self.path_for(key).is_file()

    def get(self, key: str) -> EncodedVideo | None:
        from safetensors import safe_open

        path = self.path_for(key)
        if not path.is_file():
            self._count("misses")
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["sevila"])
                if meta.get("key") != key or meta.get("format") != FORMAT_VERSION:
                    raise ValueError("key or format mismatch")
                raw = f.get_tensor("raw")
                frames = f.get_tensor("frames").numpy()
        except Exception as exc:  # torn/corrupt entry or a hash collision: drop it
            log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
            self._count("errors")
            self._count("misses")
            path.unlink(missing_ok=True)
            return None
        self._count("hits")
        raw = raw.to(device=self.device, dtype=torch.float32)
        return EncodedVideo(video=str(meta["video"]), frames=_sampled(meta, frames), raw=raw)

    def put(self, key: str, value: EncodedVideo) -> None:
        from safetensors.torch import save

        path = self.path_for(key)
        tensors = {
            "raw": _lossless_storage(value.raw.detach().to("cpu")).contiguous(),
            "frames": torch.from_numpy(np.ascontiguousarray(value.frames.frames, dtype=np.uint8)),
        }
        tmp_name = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = save(tensors, metadata={"sevila": json.dumps(_meta(key, value))})
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, path)
            tmp_name = None
        except OSError as exc:  # a full or read-only disk must not stop a run
            log.warning("could not write cache entry %s (%s)", path, exc)
            self._count("errors")
            return
        finally:
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)
        self._count("writes")

    def entries(self) -> Iterable[Path]:
        """All entry files currently in the folder."""
        return sorted(self.dir.glob("*/*.safetensors")) if self.dir.is_dir() else []

    def clear(self) -> int:
        """Delete every entry; returns how many were removed."""
        n = 0
        for p in self.entries():
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
        return n

    def stats(self) -> dict[str, Any]:
        """Folder and counters."""
        return {"dir": str(self.dir), **super().stats()}
