"""Shared pytest fixtures.

Tests run offline (``HF_HUB_OFFLINE=1``) on tiny random-weight models and synthetic videos.
Real public annotation files live in ``../shared/data`` (override with ``SEVILA_SHARED_DIR``); tests that
need them skip when the folder is absent, unless ``SEVILA_REQUIRE_SHARED=1`` (set by ``.ci/run``), which
turns the skip into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    env = os.environ.get("SEVILA_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the real public fixture files (``shared/data``); skip or fail when absent."""
    path = _shared_dir()
    if not path.is_dir():
        msg = f"shared data folder not found at {path} (set SEVILA_SHARED_DIR)"
        if os.environ.get("SEVILA_REQUIRE_SHARED") == "1":
            pytest.fail(msg + "; SEVILA_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def tiny_runtime():
    """The seeded tiny random SeViLA runtime on CPU (shared by the whole session; never mutate it)."""
    from sevila_tools.loading import load_runtime

    return load_runtime("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def video_file(tmp_path_factory) -> Path:
    """A 3-s synthetic clip (90 frames at 30 fps, moving square + frame counter)."""
    from sevila_tools.synthetic import make_video

    return make_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=90, fps=30)


@pytest.fixture(scope="session")
def scene_video(tmp_path_factory) -> Path:
    """Four solid-colour scenes of 30 frames each (red, green, blue, white)."""
    from sevila_tools.synthetic import make_scene_video

    scenes = [(30, (255, 0, 0)), (30, (0, 255, 0)), (30, (0, 0, 255)), (30, (255, 255, 255))]
    return make_scene_video(tmp_path_factory.mktemp("scenes") / "scenes.mp4", scenes=scenes, fps=30)
