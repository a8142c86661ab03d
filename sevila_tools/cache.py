"""On-disk feature cache: decoded candidate frames + raw ViT features, keyed by video *content*.

:class:`DiskFeatureCache` implements the ``get(key) / put(key, FrameSet)`` protocol of
:mod:`sevila_tools.features`. One entry holds, for one (video content, sampling, decoder, ViT weights) tuple:

* ``raw``: the raw ViT features ``(T, 257, D)`` (stored losslessly; fp16/bf16 only when that round-trips
  exactly);
* ``frames``: the uint8 candidate frames ``(T, 224, 224, 3)`` (so CLIP-style selectors can reuse them);
* the candidate metadata (native indices, timestamps, segment edges, fps, frame count, padding, decoder).

Entries are ``<dir>/<2 hex>/<sha256 of the normalised key>.safetensors``, written to a temporary file in the
same folder and renamed into place (atomic on POSIX), so concurrent processes and killed runs never leave a
torn entry; an unreadable entry is treated as a miss and removed.

Keys: :func:`feature_key` builds ``"<path>|<size>|<mtime_ns>|k=v...|vit=<weights fingerprint>"``. Before
hashing, any key whose first three fields are ``path|size|mtime`` of an existing file (the layout that
:func:`sevila_tools.features.frame_set_key` also produces) has them replaced by the **content identity**
(:func:`video_identity`: size + BLAKE2 hash of the first and last MiB), so a copied or renamed video hits the
same entry while a re-encoded one does not. The path part is still used to fill ``FrameSet.video`` on a hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sevila_tools.features import FrameSet
from sevila_tools.video import SampledFrames

log = logging.getLogger("sevila_tools.cache")

CACHE_ENV = "SEVILA_CACHE_DIR"
FORMAT_VERSION = "1"
_MIB = 1 << 20
_identity_memo: dict[tuple[str, int, int, int], str] = {}
_identity_lock = threading.Lock()


def default_cache_dir() -> Path:
    """``$SEVILA_CACHE_DIR`` if set, else ``~/.cache/sevila_tools/features``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "sevila_tools" / "features"


def video_identity(path: str | os.PathLike[str]) -> str:
    """Content identity of a file that survives copy/rename: ``"<size>-<blake2b of first + last MiB>"``.

    Files up to 2 MiB are hashed whole. Memoised per (real path, size, mtime, inode) within the process.
    """
    p = os.path.realpath(os.fspath(path))
    st = os.stat(p)
    memo_key = (p, st.st_size, st.st_mtime_ns, st.st_ino)
    with _identity_lock:
        hit = _identity_memo.get(memo_key)
    if hit is not None:
        return hit
    h = hashlib.blake2b(digest_size=16)
    h.update(str(st.st_size).encode())
    with open(p, "rb") as f:
        if st.st_size <= 2 * _MIB:
            h.update(f.read())
        else:
            h.update(f.read(_MIB))
            f.seek(st.st_size - _MIB)
            h.update(f.read(_MIB))
    ident = f"{st.st_size}-{h.hexdigest()}"
    with _identity_lock:
        _identity_memo[memo_key] = ident
    return ident


def vit_fingerprint(runtime: Any) -> str:
    """What determines raw ViT features: vision weights (hash of a few tensors), ViT dtype, device type.

    The SeViLA checkpoint does not enter (the ViT is frozen), so Localizer/Answerer checkpoints share entries.
    """
    params = list(runtime.model.vision_model.named_parameters())
    h = hashlib.blake2b(digest_size=12)
    h.update(str(sum(p.numel() for _, p in params)).encode())
    picks = [params[0], params[len(params) // 2], params[-1]] if params else []
    for name, p in picks:
        t = p.detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    vit_dtype = runtime.precision.describe()["vit"]
    return f"{h.hexdigest()}-{vit_dtype}-{runtime.device.type}"


def resolve_decoder(decoder: str) -> str:
    """``auto`` -> the decoder ``auto`` uses on this machine (``decord`` when importable, else ``pyav``)."""
    if decoder != "auto":
        return decoder
    from sevila_tools.video import decord_available

    return "decord" if decord_available() else "pyav"


def feature_key(video: str | os.PathLike[str], vit_id: str, **sampling: Any) -> str:
    """Cache key of a frame set: ``path|size|mtime_ns|<sampling k=v sorted>|vit=<vit_id>``.

    The path/size/mtime prefix is replaced by the content identity inside :class:`DiskFeatureCache`.
    """
    path = os.path.abspath(os.fspath(video))
    st = os.stat(path)
    parts = [path, str(st.st_size), str(int(st.st_mtime_ns))]
    parts += [f"{k}={sampling[k]}" for k in sorted(sampling)]
    parts.append(f"vit={vit_id}")
    return "|".join(parts)


def _split_path_key(key: str) -> tuple[str | None, str]:
    """``(video path or None, normalised key)``: path|size|mtime prefix -> ``content=<identity>``."""
    parts = key.split("|")
    if len(parts) >= 3 and parts[1].isdigit() and parts[2].lstrip("-").isdigit() and os.path.isfile(parts[0]):
        try:
            ident = video_identity(parts[0])
        except OSError:
            return parts[0], key
        return parts[0], "|".join([f"content={ident}", *parts[3:]])
    return None, key


def _lossless_storage(raw: torch.Tensor) -> torch.Tensor:
    """The smallest dtype among fp16/bf16/fp32 that represents ``raw`` exactly."""
    if raw.dtype in (torch.float16, torch.bfloat16):
        return raw
    for dtype in (torch.float16, torch.bfloat16):
        low = raw.to(dtype)
        if torch.isfinite(low).all() and torch.equal(low.to(raw.dtype), raw):
            return low
    return raw.to(torch.float32)


class DiskFeatureCache:
    """Frame sets on disk as safetensors (``get``/``put`` protocol of :mod:`sevila_tools.features`).

    Args:
        directory: cache folder (created on first write); default :func:`default_cache_dir`.
        device: device the raw features are moved to on a hit (set it to the runtime's device).

    Attributes:
        hits, misses, writes, errors: counters since construction (``errors``: unreadable entries, failed
            writes).
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.dir = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.device = torch.device(device)
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.errors = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ paths
    def path_for(self, key: str) -> Path:
        """File of the entry for ``key`` (after content normalisation)."""
        _, norm = _split_path_key(key)
        digest = hashlib.sha256(norm.encode()).hexdigest()
        return self.dir / digest[:2] / f"{digest}.safetensors"

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    # ------------------------------------------------------------------ protocol
    def get(self, key: str) -> FrameSet | None:
        """The cached frame set for ``key``, or ``None`` (a miss)."""
        from safetensors import safe_open

        video, norm = _split_path_key(key)
        digest = hashlib.sha256(norm.encode()).hexdigest()
        path = self.dir / digest[:2] / f"{digest}.safetensors"
        if not path.is_file():
            self._count("misses")
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["sevila"])
                if meta.get("key") != norm or meta.get("format") != FORMAT_VERSION:
                    raise ValueError("key or format mismatch")
                raw = f.get_tensor("raw")
                frames = f.get_tensor("frames").numpy()
        except Exception as exc:  # torn/corrupt entry or a hash collision: drop it
            log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
            self._count("errors")
            self._count("misses")
            try:
                path.unlink()
            except OSError:
                pass
            return None
        sampled = SampledFrames(
            frames=np.ascontiguousarray(frames, dtype=np.uint8),
            indices=[int(i) for i in meta["indices"]],
            timestamps=[float(t) for t in meta["timestamps"]],
            edges=[int(e) for e in meta["edges"]],
            fps=float(meta["fps"]),
            num_video_frames=int(meta["num_video_frames"]),
            padded=bool(meta["padded"]),
            decoder=str(meta["decoder"]),
        )
        self._count("hits")
        raw = raw.to(device=self.device, dtype=torch.float32)
        return FrameSet(video=video or str(meta.get("video")), frames=sampled, raw=raw)

    def put(self, key: str, value: FrameSet) -> None:
        """Store ``value`` under ``key`` atomically (write to a temporary file, then rename)."""
        from safetensors.torch import save

        _, norm = _split_path_key(key)
        digest = hashlib.sha256(norm.encode()).hexdigest()
        path = self.dir / digest[:2] / f"{digest}.safetensors"
        fr = value.frames
        meta = {
            "format": FORMAT_VERSION,
            "key": norm,
            "video": str(value.video),
            "indices": [int(i) for i in fr.indices],
            "timestamps": [float(t) for t in fr.timestamps],
            "edges": [int(e) for e in fr.edges],
            "fps": float(fr.fps),
            "num_video_frames": int(fr.num_video_frames),
            "padded": bool(fr.padded),
            "decoder": str(fr.decoder),
        }
        tensors = {
            "raw": _lossless_storage(value.raw.detach().to("cpu")).contiguous(),
            "frames": torch.from_numpy(np.ascontiguousarray(fr.frames, dtype=np.uint8)),
        }
        tmp_name = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = save(tensors, metadata={"sevila": json.dumps(meta)})
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp_name, path)
            tmp_name = None
        except OSError as exc:  # a full or read-only disk must not stop an evaluation
            log.warning("could not write cache entry %s (%s)", path, exc)
            self._count("errors")
            return
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass
        self._count("writes")

    # ------------------------------------------------------------------ housekeeping
    def entries(self) -> Iterable[Path]:
        """All entry files currently in the cache folder."""
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob("*/*.safetensors"))

    def size_bytes(self) -> int:
        """Total size of the entries on disk."""
        return sum(p.stat().st_size for p in self.entries())

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
        """``{"dir", "hits", "misses", "writes", "errors"}``."""
        return {
            "dir": str(self.dir),
            "hits": self.hits,
            "misses": self.misses,
            "writes": self.writes,
            "errors": self.errors,
        }


__all__ = [
    "CACHE_ENV",
    "DiskFeatureCache",
    "default_cache_dir",
    "feature_key",
    "resolve_decoder",
    "video_identity",
    "vit_fingerprint",
]
