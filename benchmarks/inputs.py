"""Benchmark inputs: made-up multiple-choice questions and synthetic videos shaped like the real datasets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sevila_tools.pipeline import Query
from sevila_tools.prompts import prompts_for
from sevila_tools.synthetic import make_realistic_video

_SUBJECTS = ["man", "woman", "boy", "girl", "dog", "cat", "person", "people"]
_ACTIONS = [
    "holding a red ball",
    "walking with the dog",
    "sitting on the car",
    "eating with a woman",
    "playing with the cat",
    "running to the left",
    "looking at the blue square",
    "talking with people",
    "moving up and down",
    "holding the green ball",
]
_WHEN = [
    "at the start of the video",
    "at the end of the clip",
    "in the middle of the video",
    "after the boy sits",
]


@dataclass
class BenchQuestion:
    """One made-up multiple-choice question about one video, with the official prompt texts."""

    video: str
    query: Query
    loc_text: str
    qa_text: str


def make_questions(videos: list[str], count: int, num_options: int = 5) -> list[BenchQuestion]:
    """``count`` questions (deterministic, varied lengths) cycling over ``videos``."""
    out = []
    for i in range(count):
        subject = _SUBJECTS[i % len(_SUBJECTS)]
        question = f"what is the {subject} {_ACTIONS[i % len(_ACTIONS)].split()[0]} {_WHEN[i % len(_WHEN)]}?"
        options = [f"{_ACTIONS[(i + 3 * j + 1) % len(_ACTIONS)]}." for j in range(num_options)]
        loc_text, qa_text = prompts_for(None, question, options)
        out.append(BenchQuestion(videos[i % len(videos)], Query(question, options), loc_text, qa_text))
    return out


def make_videos(folder: str | Path, count: int, num_frames: int = 300, fps: int = 30) -> list[str]:
    """``count`` short clips (moving square + counter, 320x240, h264) of slightly different lengths."""
    from sevila_tools.synthetic import make_video

    folder = Path(folder)
    return [
        str(make_video(folder / f"bench_{i}.mp4", num_frames=num_frames + 7 * i, fps=fps, gop_size=30))
        for i in range(count)
    ]


@dataclass(frozen=True)
class VideoShape:
    """Length, size and questions per video of a dataset-like synthetic video."""

    name: str
    seconds: float
    width: int
    height: int
    questions: int
    about: str


#: the scenario videos: ``make_realistic_video`` (x264 veryfast crf 23, keyint 250, 3 B-frames, texture), 30 fps
SHAPES: dict[str, VideoShape] = {
    s.name: s
    for s in (
        VideoShape("nextqa", 44, 640, 480, 9, "NExT-QA-like: 44 s, 640x480, 9 questions per video"),
        VideoShape("qvhighlights", 150, 640, 360, 1, "QVHighlights-like: 150 s, one query"),
        VideoShape("agent", 120, 640, 360, 1, "an agent's video: 120 s, 640x360, one question"),
        VideoShape("long", 600, 640, 360, 1, "a 10-minute video, 640x360, one question"),
    )
}


def scenario_video(
    folder: str | Path, shape: VideoShape, scale: float = 1.0, index: int = 0, fps: int = 30
) -> str:
    """The synthetic video ``index`` of ``shape`` (length times ``scale``), written once and reused."""
    seconds = round(shape.seconds * scale, 3)
    path = Path(folder) / f"{shape.name}_{index}_{seconds:g}s_{shape.width}x{shape.height}.mp4"
    if path.is_file() and path.stat().st_size > 0:
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part.mp4")
    # one frame longer per index, so the moving square is at different places in each video
    make_realistic_video(tmp, shape.width, shape.height, seconds + index / fps, fps=fps)
    tmp.replace(path)
    return str(path)


__all__ = [
    "SHAPES",
    "BenchQuestion",
    "VideoShape",
    "make_questions",
    "make_videos",
    "scenario_video",
]
