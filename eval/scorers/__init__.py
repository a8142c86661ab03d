"""Official-exact metrics: multiple-choice accuracy, QVHighlights moments/highlights, frame accuracy.

Definitions and conventions (all values in percent) are in ``docs/metrics.md``.
"""

from __future__ import annotations

from .files import load_predictions, score_file, score_multiple_choice, write_nextqa_result_json
from .frames import FRAME_SEC, FRAME_YES, frame_accuracy, frame_labels, has_frame_decisions
from .multiple_choice import (
    NEXTQA_COLUMNS,
    NEXTQA_TYPES,
    STAR_COLUMNS,
    STAR_TYPES,
    Predictions,
    Tally,
    accuracy_breakdown,
    nextqa_breakdown,
    score_accuracy,
    score_choices,
    score_nextqa,
    score_star,
    star_breakdown,
)
from .qvhighlights import (
    HL_LEVELS,
    IOU_THDS,
    LENGTH_RANGES,
    filter_by_length,
    score_qvhighlights,
    score_submission,
)
from .table import metrics_table

__all__ = [
    "FRAME_SEC",
    "FRAME_YES",
    "HL_LEVELS",
    "IOU_THDS",
    "LENGTH_RANGES",
    "NEXTQA_COLUMNS",
    "NEXTQA_TYPES",
    "STAR_COLUMNS",
    "STAR_TYPES",
    "Predictions",
    "Tally",
    "accuracy_breakdown",
    "filter_by_length",
    "frame_accuracy",
    "frame_labels",
    "has_frame_decisions",
    "load_predictions",
    "metrics_table",
    "nextqa_breakdown",
    "score_accuracy",
    "score_choices",
    "score_file",
    "score_multiple_choice",
    "score_nextqa",
    "score_qvhighlights",
    "score_star",
    "score_submission",
    "star_breakdown",
    "write_nextqa_result_json",
]
