"""The one key scheme of encoded videos: video content identity + frame request + decoder + ViT identity."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import torch

from sevila_tools.encoding.types import FrameSpec

_MIB = 1 << 20
_identity_memo: dict[tuple[str, int, int, int], str] = {}
_identity_lock = threading.Lock()


def video_identity(path: str | os.PathLike[str]) -> str:
    """``"<size>-<blake2b of the first and last MiB>"``: survives copy and rename, not re-encoding.

    Files up to 2 MiB are hashed whole; memoised per (real path, size, mtime, inode) within the process."""
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
    """What fixes raw ViT features: a hash of a few vision weights, the ViT dtype and the device type.

    The SeViLA checkpoint does not enter (the ViT is frozen), so Localizer/Answerer checkpoints share entries."""
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


def resolve_decoder(decoder: str, video: str | os.PathLike[str]) -> str:
    """Whose frames ``decoder`` gives for ``video``: ``decord`` or ``pyav`` (never ``auto``).

    ``auto`` keys as ``decord`` wherever decord reads the file exactly (auto then returns decord's frames,
    whichever reader it runs), else as ``pyav``; so entries are shared only between equal frames."""
    from sevila_tools.video.auto import frame_source

    return frame_source(video, decoder)


def encoding_key(spec: FrameSpec, decoder: str, vit_id: str) -> str:
    """Key of an encoded video; equal keys mean equal frames and features (memory and disk stores alike)."""
    seed = spec.seed if spec.mode == "random" else None
    parts = [
        f"content={video_identity(spec.video)}",
        f"n={spec.num_frames}",
        f"start={spec.start}",
        f"end={spec.end}",
        f"mode={spec.mode}",
        f"seed={seed}",
        f"decoder={resolve_decoder(decoder, spec.video)}",
        "size=224",
        f"vit={vit_id}",
    ]
    return "|".join(parts)
