"""One encoder for every path: a video becomes decoded candidate frames plus raw ViT features, cached once."""

from sevila_tools.encoding.encoder import VideoEncoder, encode_video
from sevila_tools.encoding.keys import encoding_key, video_identity, vit_fingerprint
from sevila_tools.encoding.stores import CACHE_ENV, DiskStore, MemoryStore, default_cache_dir
from sevila_tools.encoding.types import EncodedVideo, FeatureStore, FrameSpec

__all__ = [
    "CACHE_ENV",
    "DiskStore",
    "EncodedVideo",
    "FeatureStore",
    "FrameSpec",
    "MemoryStore",
    "VideoEncoder",
    "default_cache_dir",
    "encode_video",
    "encoding_key",
    "video_identity",
    "vit_fingerprint",
]
