"""Drawing NeedleQA frames: a panned blocky texture, grey objects drifting and bouncing, coloured event shapes.

Everything is numpy and deterministic; sizes scale with the frame (reference: 224 x 224).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from sevila_tools.synth.world import PLACES, Mover, Sprite, VideoPlan

#: event shapes are this fraction of the shorter frame side across
SPRITE_SIZE = 0.28
#: block size of the background texture at 224 px
BLOCK = 8


def _star(x: np.ndarray, y: np.ndarray, r: int) -> np.ndarray:
    theta = np.arctan2(y, x)
    edge = r * (0.42 + 0.58 * ((1 + np.cos(5 * (theta + math.pi / 2))) / 2) ** 2)
    return np.sqrt(x * x + y * y) <= edge


def _cross(x: np.ndarray, y: np.ndarray, r: int) -> np.ndarray:
    arm = 0.3 * r
    return ((np.abs(x) <= arm) & (np.abs(y) <= r)) | ((np.abs(y) <= arm) & (np.abs(x) <= r))


#: inside-tests of the shapes on a pixel grid centred at 0, for radius r
SHAPES: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "circle": lambda x, y, r: x * x + y * y <= r * r,
    "square": lambda x, y, r: np.maximum(np.abs(x), np.abs(y)) <= 0.8 * r,
    "triangle": lambda x, y, r: (y <= 0.75 * r) & (np.abs(x) <= (y + r) * 0.62),
    "diamond": lambda x, y, r: np.abs(x) + np.abs(y) <= r,
    "star": _star,
    "cross": _cross,
}


@functools.lru_cache(maxsize=256)
def shape_mask(kind: str, radius: int) -> np.ndarray:
    """Boolean mask ``(2r+1, 2r+1)`` of a shape of the given radius (pixels)."""
    if kind not in SHAPES:
        raise ValueError(f"unknown shape {kind!r}")
    r = max(2, int(radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float32)
    return SHAPES[kind](x, y, r)


def draw_shape(img: np.ndarray, kind: str, rgb: tuple[int, int, int], cx: float, cy: float, radius: float) -> None:
    """Paint a shape centred at pixel ``(cx, cy)`` in place (clipped at the borders)."""
    mask = shape_mask(kind, int(round(radius)))
    r = mask.shape[0] // 2
    x0, y0 = int(round(cx)) - r, int(round(cy)) - r
    h, w = img.shape[:2]
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + mask.shape[1], w), min(y0 + mask.shape[0], h)
    if xa >= xb or ya >= yb:
        return
    sub = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
    img[ya:yb, xa:xb][sub] = rgb


def texture_pattern(seed: int, width: int, height: int) -> np.ndarray:
    """Blocky noise plus a soft diagonal shading around 0, ``(H, W, 1)`` float32."""
    rng = np.random.default_rng(seed)
    block = max(2, round(BLOCK * min(width, height) / 224))
    small = rng.integers(-30, 31, size=(height // block + 1, width // block + 1, 1))
    noise = np.repeat(np.repeat(small, block, axis=0), block, axis=1)[:height, :width]
    yy, xx = np.mgrid[0:height, 0:width]
    shade = 18 * np.sin(2 * math.pi * (xx / width + yy / height))[..., None]
    return (noise + shade).astype(np.float32)


def texture(seed: int, width: int, height: int, tint: tuple[int, int, int]) -> np.ndarray:
    """A blocky noise texture around ``tint`` with a soft diagonal shading, ``(H, W, 3)`` uint8."""
    img = np.asarray(tint, dtype=np.float32)[None, None] + texture_pattern(seed, width, height)
    return np.clip(img, 0, 255).astype(np.uint8)


def panned(tex: np.ndarray, pan: tuple[float, float], frame: int, scale: float) -> np.ndarray:
    """The texture shifted by ``pan`` pixels per frame (wrapping around), a new array."""
    dx, dy = int(round(pan[0] * frame * scale)), int(round(pan[1] * frame * scale))
    return np.roll(tex, (dy, dx), axis=(0, 1))


def _bounce(value: float) -> float:
    """Fold a position onto [0, 1] as if bouncing off both ends."""
    v = value % 2.0
    return 2.0 - v if v > 1.0 else v


def mover_position(mover: Mover, frame: int) -> tuple[float, float]:
    """Where a drifting object is on ``frame``, as fractions of the frame (kept off the borders)."""
    margin = mover.size / 2
    span = 1 - 2 * margin
    x = _bounce((mover.start[0] + mover.velocity[0] * frame - margin) / span)
    y = _bounce((mover.start[1] + mover.velocity[1] * frame - margin) / span)
    return margin + span * x, margin + span * y


def sprite_centre(sprite: Sprite, width: int, height: int) -> tuple[float, float]:
    """Pixel centre of an event shape."""
    px, py = PLACES[sprite.place]
    return (px + sprite.offset[0]) * width, (py + sprite.offset[1]) * height


def compose(
    background: np.ndarray, movers: list[tuple[Mover, tuple[float, float]]], sprites: list[Sprite]
) -> np.ndarray:
    """Draw grey objects (at their positions) and then event shapes onto a copy of ``background``."""
    img = background.copy()
    h, w = img.shape[:2]
    side = min(w, h)
    for mover, (fx, fy) in movers:
        draw_shape(img, mover.kind, mover.grey, fx * w, fy * h, mover.size * side / 2)
    for sprite in sprites:
        cx, cy = sprite_centre(sprite, w, h)
        draw_shape(img, sprite.kind, sprite.rgb, cx, cy, SPRITE_SIZE * side / 2)
    return img


class FrameRenderer:
    """Renders the frames of one :class:`VideoPlan` (the texture is built once)."""

    def __init__(self, plan: VideoPlan) -> None:
        self.plan = plan
        self.tex = texture(plan.texture_seed, plan.width, plan.height, plan.tint)
        self.scale = min(plan.width, plan.height) / 224

    def __call__(self, frame: int) -> np.ndarray:
        plan = self.plan
        movers = [(m, mover_position(m, frame)) for m in plan.movers]
        return compose(panned(self.tex, plan.pan, frame, self.scale), movers, plan.active(frame))
