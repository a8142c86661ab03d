"""Video reading for SeViLA: frame sampling, decord/PyAV readers with identical pixels, parallel decoding.

How it works and how fast it is: ``docs/video.md``.
"""

from __future__ import annotations

from sevila_tools.video.base import Decoder, VideoInfo, _DecodeFailure, check_video_path
from sevila_tools.video.decode import _DecordReader, _import_decord, _PyAVReader, decord_available
from sevila_tools.video.pool import DecodePool, DecodeSpec
from sevila_tools.video.preprocess import CLIP_MEAN, CLIP_STD, preprocess
from sevila_tools.video.probe import probe, probe_video
from sevila_tools.video.sampling import (
    EmptyWindow,
    SampledFrames,
    frames_at_times,
    read_frames,
    sample_frames,
    sample_indices,
    window_is_empty,
)
from sevila_tools.video.warm import WarmDecoders, start_decode_workers

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DecodePool",
    "DecodeSpec",
    "Decoder",
    "EmptyWindow",
    "SampledFrames",
    "VideoInfo",
    "WarmDecoders",
    "check_video_path",
    "decord_available",
    "frames_at_times",
    "preprocess",
    "probe",
    "probe_video",
    "read_frames",
    "sample_frames",
    "sample_indices",
    "start_decode_workers",
    "window_is_empty",
]

# private names kept importable for the tests: _DecodeFailure, _DecordReader, _PyAVReader, _import_decord
_PRIVATE = (_DecodeFailure, _DecordReader, _PyAVReader, _import_decord)
