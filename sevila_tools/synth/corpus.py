"""The frame corpus the tiny base model is pre-trained on (the stand-in for BLIP-2's image-text pre-training):
frames drawn by the NeedleQA renderer (never taken from NeedleQA videos) with multiple-choice questions in
SeViLA's Answerer prompt, yes/no questions and captions."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from sevila_tools.prompts import answer_target, answerer_prompt
from sevila_tools.synth.render import compose, mover_position, texture_pattern
from sevila_tools.synth.world import (
    COLOURS,
    KINDS,
    PLACES,
    TEMPLATES,
    Event,
    Mover,
    Sprite,
    make_question,
    muted_tint,
    random_movers,
)

#: share of each kind of example in a pre-training batch of single frames
MIX = {"choice": 0.45, "yes_no": 0.35, "caption": 0.2}


@dataclass
class Example:
    """Frames ``(K, H, W, 3)`` uint8 (K = 1: the single-frame layout), the T5 text and its target."""

    frames: np.ndarray
    text: str
    target: str
    kind: str


def yuv420(img: np.ndarray) -> np.ndarray:
    """What H.264 in yuv420p does to colours: chroma averaged over 2 x 2 pixels (BT.601), back to RGB."""
    x = img.astype(np.float32)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    h, w = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
    for c in (x[..., 2], x[..., 0]):  # b - y and r - y, averaged per 2 x 2 block
        d = c[:h, :w] - y[:h, :w]
        m = (d[0::2, 0::2] + d[1::2, 0::2] + d[0::2, 1::2] + d[1::2, 1::2]) * 0.25
        for dy in (0, 1):
            for dx in (0, 1):
                c[dy:h:2, dx:w:2] = m + y[dy:h:2, dx:w:2]
    x[..., 1] = (y - 0.299 * x[..., 0] - 0.114 * x[..., 2]) / 0.587
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def random_sprites(rng: np.random.Generator, count: int) -> list[Sprite]:
    """Sprites with pairwise different colours, shapes and places."""
    colours = rng.choice(list(COLOURS), size=count, replace=False)
    kinds = rng.choice(list(KINDS), size=count, replace=False)
    places = rng.choice(list(PLACES), size=count, replace=False)
    return [Sprite(str(c), str(k), str(p), (float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04))))
            for c, k, p in zip(colours, kinds, places, strict=True)]


@functools.lru_cache(maxsize=64)
def _pattern(index: int, size: int) -> np.ndarray:
    """Texture ``index`` of a pool of 64 (without tint), so that pre-training draws scenes quickly."""
    return texture_pattern(10**6 + index, size, size)


class Scene:
    """A background and drifting grey objects; :meth:`frame` draws it at some time with some sprites."""

    def __init__(self, rng: np.random.Generator, size: int = 224) -> None:
        self.rng, self.size = rng, size
        base = _pattern(int(rng.integers(64)), size)
        self.tex = np.clip(base + np.asarray(muted_tint(rng), dtype=np.float32), 0, 255).astype(np.uint8)
        self.movers: list[Mover] = random_movers(rng, int(rng.integers(2, 4)))
        self.shift = (int(rng.integers(size)), int(rng.integers(size)))

    def frame(self, sprites: list[Sprite], time: int = 0) -> np.ndarray:
        bg = np.roll(self.tex, (self.shift[0] + time, self.shift[1] + time), axis=(0, 1))
        movers = [(m, mover_position(m, time)) for m in self.movers]
        return yuv420(compose(bg, movers, sprites))


def choice_question(rng: np.random.Generator, target: Sprite) -> tuple[str, list[str], int]:
    """A NeedleQA-template question about ``target``: (question, the template's options with ``.``, gold)."""
    template = str(rng.choice(list(TEMPLATES)))
    q = make_question([Event(target, 0, 0)], 0, template)
    return q.text + "?", [o + "." for o in q.options], q.answer


#: yes/no questions: the asked event named by shape, place, both, or colour and shape (what NeedleQA's
#: questions name, so the T5 learns to tell whether a frame shows the event a question is about)
YES_NO = {
    "shape": ("does a {kind} appear in the frame?", ("kind",)),
    "place": ("does a shape appear in the {place}?", ("place",)),
    "shape_place": ("does a {kind} appear in the {place}?", ("kind", "place")),
    "colour_shape": ("is there a {colour} {kind} in the frame?", ("colour", "kind")),
}


def yes_no_question(rng: np.random.Generator, sprites: list[Sprite]) -> tuple[str, bool]:
    """``Question: ... Answer:`` about a shown sprite or a random one (about half of the answers are yes)."""
    name = str(rng.choice(list(YES_NO)))
    text, attrs = YES_NO[name]
    shown = sprites and rng.random() < 0.5
    asked = sprites[int(rng.integers(len(sprites)))] if shown else random_sprites(rng, 1)[0]
    present = any(all(getattr(s, a) == getattr(asked, a) for a in attrs) for s in sprites)
    question = text.format(kind=asked.kind, place=asked.place, colour=asked.colour)
    return f"Question: {question} Answer:", present


def caption(sprites: list[Sprite]) -> str:
    """``a red star in the top left and a blue cross in the middle.`` (``nothing but grey shapes.`` if none)."""
    if not sprites:
        return "nothing but grey shapes."
    parts = [f"a {s.colour} {s.kind} " + ("in the middle" if s.place == "middle" else f"in the {s.place}")
             for s in sprites]
    return " and ".join(parts) + "."


def sprite_count(rng: np.random.Generator, kind: str) -> int:
    """Sprites in a pre-training frame: questions mostly see one (as NeedleQA frames do), the others 0-2."""
    if kind == "choice":
        return 1 if rng.random() < 0.7 else 2
    return int(rng.integers(0, 3))


def single_example(rng: np.random.Generator, size: int = 224) -> Example:
    """One single-frame example of a random kind (:data:`MIX`)."""
    kind = str(rng.choice(list(MIX), p=list(MIX.values())))
    scene = Scene(rng, size)
    sprites = random_sprites(rng, sprite_count(rng, kind))
    frame = scene.frame(sprites, int(rng.integers(200)))[None]
    if kind == "choice":
        target = sprites[int(rng.integers(len(sprites)))]
        question, options, gold = choice_question(rng, target)
        return Example(frame, answerer_prompt(question, options), answer_target(gold), kind)
    if kind == "yes_no":
        text, present = yes_no_question(rng, sprites)
        return Example(frame, text, "yes" if present else "no", kind)
    return Example(frame, "Question: what appears in the frame? Answer:", caption(sprites), kind)


#: how many distractor events a multi-frame example shows (0, 1 or 2): a NeedleQA keyframe set may hold up to two
DISTRACTORS = (0.2, 0.4, 0.4)


def multi_slots(rng: np.random.Generator, frames: int = 4) -> tuple[Sprite, list[list[Sprite]]]:
    """The target and what each of ``frames`` frames shows: the target in one frame, 0-2 grey distractor events
    in others (one sprite per frame, as in a NeedleQA video), nothing in the rest."""
    target, *others = random_sprites(rng, 1 + int(rng.choice(len(DISTRACTORS), p=DISTRACTORS)))
    sprites = [target, *(s.greyed() for s in others)]
    slots = [int(i) for i in rng.permutation(frames)[: len(sprites)]]
    shown = dict(zip(slots, ([s] for s in sprites), strict=True))
    return target, [shown.get(i, []) for i in range(frames)]


def multi_example(rng: np.random.Generator, frames: int = 4, size: int = 224) -> Example:
    """A multiple-choice question on ``frames`` frames of one scene, answered by one of them only."""
    scene = Scene(rng, size)
    target, per_frame = multi_slots(rng, frames)
    times = np.sort(rng.choice(300, size=frames, replace=False))
    stack = np.stack([scene.frame(shown, int(t)) for shown, t in zip(per_frame, times, strict=True)])
    question, options, gold = choice_question(rng, target)
    return Example(stack, answerer_prompt(question, options), answer_target(gold), "multi_choice")


# ------------------------------------------------------------------------------------ text and attribute phases
def describe(sprites: list[Sprite], greys: list[str]) -> str:
    """A frame in words, for text-only pre-training: sprites with places, then the grey objects."""
    parts = [caption([s]).rstrip(".") for s in sprites] + [f"a grey {k}" for k in greys]
    return " and ".join(parts) + "." if parts else "nothing."


def text_example(rng: np.random.Generator) -> Example:
    """The Answerer's tasks in text (the stand-in for Flan-T5's own training): the frames are described in words
    where the Q-Former's tokens will go, ``Frame: <words> <prompt>``; 1 or 4 frames."""
    multi = rng.random() < 0.35
    greys = [str(k) for k in rng.choice(list(KINDS), size=int(rng.integers(0, 3)))]
    if multi:
        target, frames = multi_slots(rng)
        context = " ".join(f"Frame {i + 1}: {describe(f, greys)}" for i, f in enumerate(frames))
        question, options, gold = choice_question(rng, target)
        return Example(np.zeros(0), f"{context} {answerer_prompt(question, options)}", answer_target(gold),
                       "text_multi")
    kind = str(rng.choice(list(MIX), p=list(MIX.values())))
    sprites = random_sprites(rng, sprite_count(rng, kind))
    context = f"Frame: {describe(sprites, greys)}"
    if kind == "choice":
        target = sprites[int(rng.integers(len(sprites)))]
        question, options, gold = choice_question(rng, target)
        return Example(np.zeros(0), f"{context} {answerer_prompt(question, options)}", answer_target(gold), "text")
    if kind == "yes_no":
        text, present = yes_no_question(rng, sprites)
        return Example(np.zeros(0), f"{context} {text}", "yes" if present else "no", "text")
    return Example(np.zeros(0), f"{context} Question: what appears in the frame? Answer:", caption(sprites), "text")


def attribute_example(rng: np.random.Generator, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """A frame and, for each place, the colour and shape shown there (0 = none): labels ``(places, 2)``
    (the stand-in for the ViT's own pre-training)."""
    scene = Scene(rng, size)
    sprites = random_sprites(rng, int(rng.integers(0, 4)))
    labels = np.zeros((len(PLACES), 2), dtype=np.int64)
    for s in sprites:
        labels[list(PLACES).index(s.place)] = (list(COLOURS).index(s.colour) + 1, list(KINDS).index(s.kind) + 1)
    return scene.frame(sprites, int(rng.integers(300))), labels
