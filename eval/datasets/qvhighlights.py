"""QVHighlights: ``highlight_{split}_release.jsonl`` or SeViLA's JSON list; scored as moments (+ frame accuracy)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sevila_tools.errors import InputError

from ..scorers.qvhighlights import score_submission
from ._reading import AnnotationFile, as_float, as_int, field_of
from ._spec import DatasetSpec, Reader, Sample, register_dataset

GT_FIELDS = ("relevant_clip_ids", "saliency_scores")


def _windows(value: Any, where: str) -> list[list[float]]:
    if not isinstance(value, list) or any(
        not isinstance(w, (list, tuple)) or len(w) < 2 or not all(isinstance(x, (int, float)) for x in w[:2])
        for w in value
    ):
        raise InputError(f"{where}: field 'relevant_windows' must be a list of [start, end] pairs")
    return [[float(w[0]), float(w[1])] for w in value]


def _read(file: AnnotationFile, spec: DatasetSpec, paths: Callable[[str, str, str], str]) -> list[Sample]:
    sevila = "vid" not in file.first  # SeViLA's list names the video "video" and the qid "QVHighlight_<n>"
    samples: list[Sample] = []
    for where, rec in file.records:
        raw_qid = field_of(rec, "qid", where)
        vid = str(field_of(rec, "video" if sevila else "vid", where))
        qid = as_int(str(raw_qid).split("_")[-1] if sevila else raw_qid, "qid", where)
        duration = as_float(field_of(rec, "duration", where), "duration", where)
        gt: dict[str, Any] = {
            "qid": qid,
            "query": str(field_of(rec, "query", where)),
            "duration": rec["duration"],
        }
        gt["vid"] = vid
        windows = None
        if "relevant_windows" in rec:
            windows = _windows(rec["relevant_windows"], where)
            gt["relevant_windows"] = rec["relevant_windows"]
        gt.update({k: rec[k] for k in GT_FIELDS if k in rec})
        if sevila:
            gt["sevila_qid"] = str(raw_qid)
        samples.append(
            Sample(
                dataset=spec.name,
                qid=str(qid),
                video_id=vid,
                video=paths(vid, vid, where),
                question=gt["query"],
                options=[],
                answer=None,
                qtype=None,
                duration=duration,
                windows=windows,
                extra=gt,
            )
        )
    return samples


def ground_truth(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """Samples back to the official ground-truth records (``qid``, ``query``, ``duration``, ``vid``, windows...)."""
    out = []
    for s in samples:
        if s.dataset != SPEC.name:
            raise InputError(f"sample {s.qid} is not a QVHighlights sample")
        out.append({k: v for k, v in s.extra.items() if k != "sevila_qid"})
    return out


def _score(submission: Any, samples: Sequence[Sample], *, allow_missing: bool = False, **_: Any) -> dict:
    if not isinstance(submission, list):
        raise InputError("QVHighlights predictions must be a list of submission lines")
    return score_submission(submission, ground_truth(samples), match_number=not allow_missing)


SPEC = register_dataset(
    DatasetSpec(
        name="qvhighlights",
        description="QVHighlights: moment retrieval and highlight detection for free-text queries",
        readers=(
            Reader(
                "release JSON Lines or SeViLA JSON list (qid, query, duration, vid, relevant_windows)",
                ("jsonl", "json"),
                lambda r: "query" in r,
                _read,
            ),
        ),
        prompt_style="query_relevance",
        num_options=0,
        task="moments",
        scorer=_score,
        headline="MR-full-mAP",
        columns=(
            "MR-full-R1@0.5",
            "MR-full-R1@0.7",
            "MR-full-mAP",
            "HL-min-VeryGood-mAP",
            "HL-min-VeryGood-Hit1",
        ),
        headline_column="MR-full-mAP",
        default_frames=75,
    )
)
