"""PNG plot of a localization: score over time with keyframes marked and their thumbnails."""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

from sevila_tools.schemas import LocalizeResult

#: drawn instead of a character the plot's font lacks (emoji, most CJK), so matplotlib does not warn per glyph
MISSING_GLYPH = "\u25a1"


@lru_cache(maxsize=4)
def _font_chars(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(path).get_charmap())


def drawable(text: str) -> str:
    """``text`` as matplotlib's current font can draw it, literally: a character the font lacks becomes a white
    square (joiners, variation selectors and skin-tone modifiers it lacks are dropped), and ``$`` is escaped so
    that a question with prices is not read as mathtext."""
    from matplotlib import font_manager

    chars = _font_chars(font_manager.findfont(font_manager.FontProperties()))
    out = []
    for ch in text:
        if ord(ch) < 32 or ord(ch) in chars:
            out.append("\\$" if ch == "$" else ch)
        elif unicodedata.category(ch) not in ("Mn", "Cf", "Sk"):
            out.append(MISSING_GLYPH)
    return "".join(out)


def plot_localization(loc: LocalizeResult, path: str | Path, decoder: str = "auto") -> Path:
    """Write ``path``: per-frame score curve (raw yes-logit, or nothing for unscored selectors), keyframes as
    vertical lines, and a row of keyframe thumbnails (native resolution, decoded again for display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sevila_tools.video import read_frames

    k = max(len(loc.keyframes), 1)
    fig = plt.figure(figsize=(max(8, 2.2 * k), 6))
    grid = fig.add_gridspec(2, k, height_ratios=[2, 1.3])
    ax = fig.add_subplot(grid[0, :])
    times = [f.time for f in loc.frames]
    if any(f.score is not None for f in loc.frames):
        ax.plot(times, [f.score for f in loc.frames], marker="o", ms=3, label="score (yes logit)")
    for kf in loc.keyframes:
        ax.axvline(kf.time, color="tab:red", alpha=0.6)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score")
    title = f"{loc.selector}: {loc.question}"
    if loc.notice:
        title += "\n" + loc.notice
    ax.set_title(drawable(title), fontsize=9)
    thumbs, _ = read_frames(loc.video, [kf.frame_index for kf in loc.keyframes], decoder=decoder, size=None)
    for i, (kf, img) in enumerate(zip(loc.keyframes, thumbs, strict=True)):
        a = fig.add_subplot(grid[1, i])
        a.imshow(img)
        a.set_title(f"{kf.time:.2f}s", fontsize=8)
        a.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
