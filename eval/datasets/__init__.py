"""Benchmarks as :class:`DatasetSpec` objects: one module per dataset in this package, found automatically.

Formats, video-path rules and how to add a dataset: ``docs/datasets.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._preflight import PreflightReport, preflight
from ._reading import AnnotationFile, parse_annotation_file, read_json_or_jsonl, read_text
from ._spec import (
    DatasetSpec,
    Reader,
    Sample,
    Scorer,
    VideoContext,
    VideoRule,
    available_datasets,
    default_video_path,
    get_dataset,
    register_dataset,
)


def check_dataset(dataset: str) -> str:
    """The normalised name of a registered dataset; one-line :class:`InputError` listing the names otherwise."""
    return get_dataset(dataset).name


def load_annotations(
    dataset: str,
    path: str | Path,
    videos_root: str | Path | Mapping[str, str | Path] | None = None,
    video_map: str | Path | Mapping[str, str] | None = None,
    video_ext: str = ".mp4",
) -> list[Sample]:
    """``get_dataset(dataset).load(path, videos_root, video_map, video_ext)`` (see :meth:`DatasetSpec.load`)."""
    return get_dataset(dataset).load(path, videos=videos_root, video_map=video_map, video_ext=video_ext)


def count_empty_windows(samples: Sequence[Sample]) -> int:
    """How many samples have a window whose end is not after its start (kept and scored; warn about them)."""
    return sum(1 for s in samples if s.empty_window)


def qvh_ground_truth(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """QVHighlights samples back to the official ground-truth records used by the scorer."""
    from .qvhighlights import ground_truth

    return ground_truth(samples)


__all__ = [
    "AnnotationFile",
    "DatasetSpec",
    "PreflightReport",
    "Reader",
    "Sample",
    "Scorer",
    "VideoContext",
    "VideoRule",
    "available_datasets",
    "check_dataset",
    "count_empty_windows",
    "default_video_path",
    "get_dataset",
    "load_annotations",
    "parse_annotation_file",
    "preflight",
    "qvh_ground_truth",
    "read_json_or_jsonl",
    "read_text",
    "register_dataset",
]
