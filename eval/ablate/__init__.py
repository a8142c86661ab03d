"""Keyframe-selection ablations (``sevila ablate``): selectors x frames->keyframes x answerers, one table."""

from .config import (
    DEFAULT_GRID,
    AblationConfig,
    Setting,
    default_selectors,
    parse_grid,
    parse_names,
    plan_settings,
)
from .report import (
    AblationResult,
    AblationRow,
    print_terminal,
    render_csv,
    render_markdown,
    render_png,
    terminal_rows,
)
from .run import AblationRun, run_ablation

__all__ = [
    "DEFAULT_GRID",
    "AblationConfig",
    "AblationResult",
    "AblationRow",
    "AblationRun",
    "Setting",
    "default_selectors",
    "parse_grid",
    "parse_names",
    "plan_settings",
    "print_terminal",
    "render_csv",
    "render_markdown",
    "render_png",
    "run_ablation",
    "terminal_rows",
]
