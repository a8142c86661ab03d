"""Preflight: which videos of a sample list exist (and decode) before a long run starts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from sevila_tools.errors import error_line

from ._spec import Sample


class PreflightReport(BaseModel):
    """Result of :func:`preflight`: which videos are missing or unreadable, and the samples that can run."""

    missing: list[str] = Field(default_factory=list)
    unreadable: list[str] = Field(default_factory=list)
    ok: list[Sample] = Field(default_factory=list)
    total_videos: int = 0
    unreadable_reasons: dict[str, str] = Field(default_factory=dict)

    def summary(self, hint: str | None = None) -> str:
        """One line: ``"N of M videos missing (first: a, b, c)"`` (+ ``hint`` when videos are missing, + the
        unreadable count when any). ``hint`` comes from the dataset (:meth:`DatasetSpec.missing_videos_hint`)."""
        line = f"{len(self.missing)} of {self.total_videos} videos missing"
        if self.missing:
            line += f" (first: {', '.join(self.missing[:3])})"
            if hint:
                line += f"; {hint}"
        if self.unreadable:
            line += f"; {len(self.unreadable)} unreadable (first: {', '.join(self.unreadable[:3])})"
        return line


def preflight(samples: Sequence[Sample], check_readable: bool = False) -> PreflightReport:
    """Check that every sample's video exists (and, with ``check_readable``, that it decodes).

    Readability uses ``sevila_tools.video.probe`` (imported lazily), which raises ``VideoError`` for bad videos.
    """
    seen: dict[str, bool] = {}
    missing: list[str] = []
    unreadable: list[str] = []
    reasons: dict[str, str] = {}
    probe = None
    if check_readable:
        from sevila_tools.video import probe  # lazy: needs the video backend

    for s in samples:
        if s.video in seen:
            continue
        if not Path(s.video).exists():
            missing.append(s.video)
            seen[s.video] = False
            continue
        good = True
        if probe is not None:
            try:
                probe(Path(s.video))
            except Exception as exc:  # a decoder crash must not abort the whole preflight either
                good = False
                reasons[s.video] = error_line(exc)
            if not good:
                unreadable.append(s.video)
        seen[s.video] = good
    ok = [s for s in samples if seen.get(s.video)]
    return PreflightReport(
        missing=missing, unreadable=unreadable, ok=ok, total_videos=len(seen), unreadable_reasons=reasons
    )
