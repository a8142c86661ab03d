"""NeedleQA's world: the vocabulary, one video's plan (background, drifting objects, short events) and its
question. Pure data and seeded randomness; drawing lives in :mod:`sevila_tools.synth.render`.

The rules (event lengths, the 32-frame guarantee, question templates) are described in ``docs/needleqa.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: colours of event shapes (the answers of colour questions, in the order the options list them), RGB
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (40, 170, 60),
    "blue": (45, 85, 230),
    "yellow": (238, 212, 36),
    "purple": (148, 55, 205),
}
#: shapes of events and drifting objects
KINDS: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
#: where an event shows up, as (x, y) fractions of the frame
PLACES: dict[str, tuple[float, float]] = {
    "top left": (0.27, 0.28),
    "top right": (0.73, 0.28),
    "bottom left": (0.27, 0.72),
    "bottom right": (0.73, 0.72),
    "middle": (0.5, 0.5),
}
#: colour of the distractor events (shapes that appear like the target but are never what a question asks)
EVENT_GREY: tuple[int, int, int] = (160, 160, 160)
#: grey tones of the objects that drift through the whole video (never an answer)
GREYS: tuple[tuple[int, int, int], ...] = ((95, 95, 95), (140, 140, 140), (185, 185, 185), (225, 225, 225))
#: question templates, named by how they pick the event: name -> (question with {kind}/{place} slots, what the
#: options are). Every template asks for the colour, so the question names the event by its shape, its place
#: or both, and only the frames of that event show the answer.
TEMPLATES: dict[str, tuple[str, str]] = {
    "shape": ("what colour is the {kind} that appears", "colour"),
    "place": ("what colour is the shape that appears in the {place}", "colour"),
    "shape_place": ("what colour is the {kind} that appears in the {place}", "colour"),
}
#: NExT-QA question type of each template (descriptive location / other), so NExT-QA's scorer reads the csv
NEXTQA_TYPE: dict[str, str] = {"shape": "DO", "place": "DL", "shape_place": "DL"}
NUM_OPTIONS = 5
EVENTS_PER_VIDEO = 3
#: candidate frames SeViLA samples; every target event contains at least one of their uniform midpoints
CANDIDATES = 32
MAX_EVENT_FRACTION = 0.10
MIN_FRAMES = 64


@dataclass(frozen=True)
class Sprite:
    """A coloured shape at a place (``offset``: jitter as a fraction of the frame)."""

    colour: str
    kind: str
    place: str
    offset: tuple[float, float] = (0.0, 0.0)

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The drawing colour (distractor events are ``grey``)."""
        return EVENT_GREY if self.colour == "grey" else COLOURS[self.colour]

    def greyed(self) -> Sprite:
        """The same shape at the same place, as a grey distractor event."""
        return Sprite("grey", self.kind, self.place, self.offset)

    def caption(self) -> str:
        """``a red star appears in the top left`` (the span query of this event)."""
        where = "in the middle" if self.place == "middle" else f"in the {self.place}"
        return f"a {self.colour} {self.kind} appears {where}"


@dataclass(frozen=True)
class Event:
    """A sprite shown on frames ``first..last`` (both included)."""

    sprite: Sprite
    first: int
    last: int

    def window(self, fps: float) -> list[float]:
        """``[first / fps, last / fps]`` seconds: a frame is inside iff its time lies in it (both ends)."""
        return [round(self.first / fps, 6), round(self.last / fps, 6)]


@dataclass(frozen=True)
class Mover:
    """A grey object drifting through the whole video, bouncing off the borders (positions as fractions)."""

    kind: str
    grey: tuple[int, int, int]
    start: tuple[float, float]
    velocity: tuple[float, float]
    size: float


@dataclass(frozen=True)
class Question:
    """One multiple-choice question about the target event."""

    template: str
    text: str
    options: tuple[str, ...]
    answer: int


@dataclass
class VideoPlan:
    """Everything needed to render one video and annotate it."""

    num_frames: int
    fps: float
    width: int
    height: int
    texture_seed: int
    tint: tuple[int, int, int]
    pan: tuple[float, float]
    movers: list[Mover]
    events: list[Event]
    target: int
    question: Question
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def target_event(self) -> Event:
        return self.events[self.target]

    def active(self, frame: int) -> list[Sprite]:
        """Sprites visible on ``frame``."""
        return [e.sprite for e in self.events if e.first <= frame <= e.last]


def uniform_midpoints(num_frames: int, n: int = CANDIDATES) -> list[int]:
    """SeViLA's uniform candidates: midpoints of ``n`` equal segments (``docs/video.md``)."""
    n = min(n, num_frames)
    edges = np.linspace(0, num_frames, n + 1).astype(int)
    return [int((edges[j] + edges[j + 1]) // 2) for j in range(n)]


def event_length_range(num_frames: int) -> tuple[int, int]:
    """(shortest, longest) event in frames: long enough to hold a uniform midpoint wherever it starts, at most
    10 % of the video."""
    shortest = math.ceil(num_frames / CANDIDATES) + 1
    longest = int(MAX_EVENT_FRACTION * num_frames)
    return shortest, longest


def _event_times(rng: np.random.Generator, num_frames: int, count: int) -> list[tuple[int, int]]:
    """Non-overlapping ``(first, last)`` frames for ``count`` events, in random order of time."""
    lo, hi = event_length_range(num_frames)
    lengths = [int(rng.integers(lo, hi + 1)) for _ in range(count)]
    gap = max(2, num_frames // 40)
    free = num_frames - sum(lengths) - gap * (count + 1)
    cuts = np.sort(rng.integers(0, free + 1, size=count))
    times, cursor, used = [], gap, 0
    for length, cut in zip(lengths, cuts, strict=True):
        first = cursor + int(cut) - used
        times.append((first, first + length - 1))
        cursor, used = first + length + gap, int(cut)
    return times


def _sprites(rng: np.random.Generator, count: int) -> list[Sprite]:
    """Events with pairwise different colours, shapes and places (so any one attribute names an event)."""
    colours = rng.choice(list(COLOURS), size=count, replace=False)
    kinds = rng.choice(list(KINDS), size=count, replace=False)
    places = rng.choice(list(PLACES), size=count, replace=False)
    return [
        Sprite(str(c), str(k), str(p), (float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04))))
        for c, k, p in zip(colours, kinds, places, strict=True)
    ]


def muted_tint(rng: np.random.Generator) -> tuple[int, int, int]:
    """A greyish background tone with a slight hue, so that event colours stand out."""
    grey = int(rng.integers(85, 136))
    r, g, b = (grey + int(d) for d in rng.integers(-20, 21, size=3))
    return r, g, b


def random_movers(rng: np.random.Generator, count: int) -> list[Mover]:
    """Grey objects with random shape, tone, start, velocity and size."""
    return [
        Mover(
            kind=str(rng.choice(list(KINDS))),
            grey=GREYS[int(rng.integers(len(GREYS)))],
            start=(float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9))),
            velocity=(float(rng.uniform(-0.012, 0.012)), float(rng.uniform(-0.012, 0.012))),
            size=float(rng.uniform(0.11, 0.15)),
        )
        for _ in range(count)
    ]


def options_of(template: str) -> tuple[str, ...]:
    """The five options of a template, always in the same order (the vocabulary of what it asks)."""
    asks = TEMPLATES[template][1]
    return {"colour": tuple(COLOURS), "kind": KINDS, "place": tuple(PLACES)}[asks]


def make_question(events: list[Event], target: int, template: str) -> Question:
    """A question about ``events[target]``; the options are the template's whole vocabulary in a fixed order,
    so the other events' answers are always among the wrong ones."""
    sprite = events[target].sprite
    text, asks = TEMPLATES[template]
    options = options_of(template)
    return Question(template, text.format(kind=sprite.kind, place=sprite.place), options,
                    options.index(getattr(sprite, asks)))


def plan_video(
    seed: int, index: int, num_frames: int, fps: float, width: int, height: int, template: str | None = None
) -> VideoPlan:
    """The plan of video ``index`` of a generation with ``seed`` (independent of how many videos there are)."""
    if num_frames < MIN_FRAMES:
        raise ValueError(f"a needleqa video needs at least {MIN_FRAMES} frames, got {num_frames}")
    rng = np.random.default_rng([seed, index])
    sprites = _sprites(rng, EVENTS_PER_VIDEO)
    times = _event_times(rng, num_frames, EVENTS_PER_VIDEO)
    events = [Event(s, a, b) for s, (a, b) in zip(sprites, times, strict=True)]
    mids = uniform_midpoints(num_frames)
    if not all(any(e.first <= m <= e.last for m in mids) for e in events):  # guaranteed by the lengths
        raise AssertionError(f"video {index}: an event holds none of the {CANDIDATES} uniform candidates")
    target = int(rng.integers(EVENTS_PER_VIDEO))
    events = [e if i == target else Event(e.sprite.greyed(), e.first, e.last) for i, e in enumerate(events)]
    name = template or str(rng.choice(list(TEMPLATES)))
    angle = float(rng.uniform(0, 2 * math.pi))
    speed = float(rng.uniform(0.5, 1.5))
    return VideoPlan(
        num_frames=num_frames,
        fps=fps,
        width=width,
        height=height,
        texture_seed=int(rng.integers(2**31)),
        tint=muted_tint(rng),
        pan=(speed * math.cos(angle), speed * math.sin(angle)),
        movers=random_movers(rng, int(rng.integers(2, 4))),
        events=events,
        target=target,
        question=make_question(events, target, name),
    )
