"""The encoder and its stores: one key scheme by video content, lossless atomic disk entries, counters."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sevila_tools.encoding import (
    CACHE_ENV,
    DiskStore,
    EncodedVideo,
    FrameSpec,
    MemoryStore,
    VideoEncoder,
    default_cache_dir,
    encode_video,
    encoding_key,
    video_identity,
    vit_fingerprint,
)
from sevila_tools.loading import load_runtime
from sevila_tools.synthetic import make_scene_video, make_video
from sevila_tools.video import sample_frames


@pytest.fixture(scope="module")
def rt():
    return load_runtime("tiny-random", device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(
        tmp_path_factory.mktemp("cachevid") / "a.mp4", num_frames=30, fps=30, width=160, height=120
    )


def _frame_set(path: Path, n: int = 6, raw: torch.Tensor | None = None) -> EncodedVideo:
    frames = sample_frames(path, n)
    if raw is None:
        raw = torch.randn(n, 257, 8, generator=torch.Generator().manual_seed(1))
    return EncodedVideo(video=str(path), frames=frames, raw=raw)


def feature_key(video: Path, vit: str, n: int, **extra: object) -> str:
    return encoding_key(FrameSpec(str(video), n, **extra), "pyav", vit)


def test_roundtrip_is_exact_and_counts(tmp_path, clip):
    cache = DiskStore(tmp_path / "c")
    key = feature_key(clip, "vit-x", n=6)
    assert cache.get(key) is None
    fs = _frame_set(clip)
    cache.put(key, fs)
    got = cache.get(key)
    assert got is not None
    assert torch.equal(got.raw, fs.raw) and got.raw.dtype == torch.float32
    assert np.array_equal(got.frames.frames, fs.frames.frames) and got.frames.frames.dtype == np.uint8
    for name in ("indices", "timestamps", "edges", "fps", "num_video_frames", "padded", "decoder"):
        assert getattr(got.frames, name) == getattr(fs.frames, name), name
    assert Path(got.video).samefile(clip)
    assert (cache.hits, cache.misses, cache.writes, cache.errors) == (1, 1, 1, 0)
    entries = list(cache.entries())
    assert len(entries) == 1 and entries[0].suffix == ".safetensors"
    assert not [p for p in entries[0].parent.iterdir() if p.name.startswith(".tmp-")]  # no temp file left


def test_raw_stored_losslessly_in_half_when_exact(tmp_path, clip):
    cache = DiskStore(tmp_path / "c")
    exact = torch.randn(6, 257, 8).to(torch.float16).float()  # representable in fp16
    k1 = feature_key(clip, "v", n=6, start=0.0)
    k2 = feature_key(clip, "v", n=6, start=0.1)
    cache.put(k1, _frame_set(clip, raw=exact))
    cache.put(k2, _frame_set(clip, raw=exact + 1e-4))  # not representable: must stay fp32
    assert torch.equal(cache.get(k1).raw, exact)
    assert torch.equal(cache.get(k2).raw, exact + 1e-4)
    assert cache.path_for(k1).stat().st_size < cache.path_for(k2).stat().st_size


def test_identity_survives_copy_and_rename_not_content_change(tmp_path, clip):
    cache = DiskStore(tmp_path / "c")
    src = tmp_path / "orig.mp4"
    shutil.copy(clip, src)
    cache.put(feature_key(src, "v", n=6), _frame_set(src))
    copy = tmp_path / "elsewhere" / "renamed.mp4"
    copy.parent.mkdir()
    shutil.copy(src, copy)
    moved = tmp_path / "moved.mp4"
    src.rename(moved)
    for p in (copy, moved):
        assert cache.get(feature_key(p, "v", n=6)) is not None  # content identity, not the path
    other = make_scene_video(tmp_path / "other.mp4", [(30, (200, 10, 10))])
    assert cache.get(feature_key(other, "v", n=6)) is None
    assert cache.get(feature_key(copy, "v", n=7)) is None  # sampling is part of the key
    assert cache.get(feature_key(copy, "w", n=6)) is None  # ViT identity is part of the key
    assert (cache.hits, cache.misses) == (2, 3)


def test_video_identity_hashes_first_and_last_mib(tmp_path):
    big = bytearray(np.random.default_rng(0).integers(0, 256, 5 << 20, dtype=np.uint8).tobytes())
    a = tmp_path / "a.bin"
    a.write_bytes(bytes(big))
    ident = video_identity(a)
    assert ident.startswith(f"{5 << 20}-")
    b = tmp_path / "b.bin"
    big[-10] ^= 0xFF  # last MiB changes -> new identity
    b.write_bytes(bytes(big))
    assert video_identity(b) != ident
    c = tmp_path / "c.bin"
    big[-10] ^= 0xFF
    c.write_bytes(bytes(big))
    assert video_identity(c) == ident  # same bytes, other name


def test_encoder_hits_the_store_for_a_copied_video_and_reports_the_current_path(tmp_path, rt, clip):
    store = DiskStore(tmp_path / "c")
    enc = VideoEncoder(rt, store=store)
    first = enc.encode(FrameSpec(str(clip), 4))
    copy = tmp_path / "copy.mp4"
    shutil.copy(clip, copy)
    second = enc.encode(FrameSpec(str(copy), 4))
    assert (store.hits, store.writes, enc.decoded) == (1, 1, 1)
    assert torch.equal(first.raw, second.raw) and second.video == str(copy)
    third = VideoEncoder(rt, store=MemoryStore()).encode(FrameSpec(str(clip), 4))
    assert torch.equal(third.raw, first.raw)  # the memory store computes the same values


def test_encode_video_matches_sampling_and_vit(rt, clip):
    ev = encode_video(str(clip), 5, runtime=rt)
    frames = sample_frames(clip, 5)
    assert ev.indices == frames.indices and np.array_equal(ev.frames.frames, frames.frames)
    assert torch.equal(ev.raw, rt.vit(frames.frames))


def test_encode_many_keeps_order_and_reports_a_bad_video_without_stopping(tmp_path, rt, clip):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    specs = [FrameSpec(str(clip), 3), FrameSpec(str(bad), 3), FrameSpec(str(clip), 4)]
    got = list(VideoEncoder(rt).encode_many(specs, prefetch=2))
    assert [s for s, _ in got] == specs
    assert isinstance(got[1][1], Exception) and "bad.mp4" in str(got[1][1])
    assert got[0][1].num_frames == 3 and got[2][1].num_frames == 4


def test_features_at_reuses_candidates_and_encodes_the_rest(rt, clip):
    enc = VideoEncoder(rt)
    ev = enc.encode(FrameSpec(str(clip), 4))
    wanted = [ev.indices[1], 2, ev.indices[3]]
    feats = enc.features_at(ev, wanted)
    assert torch.equal(feats[0], ev.raw[1]) and torch.equal(feats[2], ev.raw[3])
    from sevila_tools.video import read_frames

    pixels, _ = read_frames(clip, [2], size=224)
    assert torch.allclose(feats[1], rt.vit(pixels)[0])


def test_corrupt_entry_is_a_miss_and_removed(tmp_path, clip):
    cache = DiskStore(tmp_path / "c")
    key = feature_key(clip, "v", n=6)
    cache.put(key, _frame_set(clip))
    path = cache.path_for(key)
    path.write_bytes(path.read_bytes()[:100])  # torn file
    assert cache.get(key) is None
    assert cache.errors == 1 and not path.exists()
    cache.put(key, _frame_set(clip))
    assert cache.get(key) is not None
    assert cache.clear() == 1 and list(cache.entries()) == []


def test_default_dir_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "sevila_tools" / "features"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    assert DiskStore().dir == tmp_path / "envcache"


def test_vit_fingerprint_follows_vision_weights(rt):
    before = vit_fingerprint(rt)
    assert before == vit_fingerprint(rt) and before.endswith("-fp32-cpu")
    p = next(rt.model.vision_model.parameters())
    saved = p.detach().clone()
    with torch.no_grad():
        p.add_(1.0)
        try:
            assert vit_fingerprint(rt) != before
        finally:
            p.copy_(saved)
    assert vit_fingerprint(rt) == before


def test_encode_many_with_decode_workers_equals_thread_and_uses_the_store(tmp_path, rt, clip):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    specs = [FrameSpec(str(clip), 3), FrameSpec(str(bad), 3), FrameSpec(str(clip), 5)]
    store = DiskStore(tmp_path / "c")
    VideoEncoder(rt, store=store).encode(specs[2])  # one entry already stored
    by_thread = list(VideoEncoder(rt).encode_many(specs, prefetch=1))
    pooled_enc = VideoEncoder(rt, store=store, decode_workers=2)
    by_pool = list(pooled_enc.encode_many(specs, prefetch=2))
    assert [s for s, _ in by_pool] == specs and isinstance(by_pool[1][1], Exception)
    for (_, a), (_, b) in zip(by_thread, by_pool, strict=True):
        if not isinstance(a, Exception):
            assert a.indices == b.indices and np.array_equal(a.frames.frames, b.frames.frames)
            assert torch.equal(a.raw, b.raw)
    assert pooled_enc.decoded == 1 and store.hits == 1  # the stored entry was not decoded again
