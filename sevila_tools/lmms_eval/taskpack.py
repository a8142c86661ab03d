"""The task pack's logic: local-file lmms-eval tasks over this toolkit's annotation formats (``docs/frames.md``).

lmms-eval tasks take no arguments, so each task reads its files from the environment:
``SEVILA_<DATASET>_ANNOTATIONS`` and ``SEVILA_<DATASET>_VIDEOS`` (required), ``SEVILA_<DATASET>_VIDEO_MAP`` and
``SEVILA_<DATASET>_VIDEO_EXT`` (optional), e.g. ``SEVILA_NEXTQA_ANNOTATIONS=val.csv``. Documents keep the
annotation file's order, so a ``doc_id`` is a question's position in it (as VideoITG files count).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from .common import LETTERS, PluginError

#: the datasets the pack has a task for (``sevila_<name>``)
TASK_DATASETS = ("nextqa", "star", "how2qa", "tvqa", "vlep")
DEFAULT_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


def env_name(dataset: str, key: str) -> str:
    """``SEVILA_NEXTQA_ANNOTATIONS`` and friends."""
    return f"SEVILA_{dataset.upper()}_{key}"


def load_docs(dataset: str) -> list[dict[str, Any]]:
    """The documents of task ``sevila_<dataset>``: one per question of the annotation file, in its order."""
    from sevila_tools.errors import SevilaError
    from sevila_tools.eval.datasets import get_dataset, preflight

    ann, videos = os.environ.get(env_name(dataset, "ANNOTATIONS")), os.environ.get(env_name(dataset, "VIDEOS"))
    if not ann or not videos:
        raise PluginError(f"task sevila_{dataset} reads its files from the environment: set "
                          f"{env_name(dataset, 'ANNOTATIONS')} and {env_name(dataset, 'VIDEOS')}")
    try:
        samples = get_dataset(dataset).load(ann, videos, os.environ.get(env_name(dataset, "VIDEO_MAP")) or None,
                                            os.environ.get(env_name(dataset, "VIDEO_EXT")) or ".mp4")
        report = preflight(samples, check_readable=False)
    except SevilaError as exc:
        raise PluginError(str(exc)) from None
    if report.missing:
        raise PluginError(f"task sevila_{dataset}: {report.summary()}")
    return [{
        "question_id": s.qid, "dataset": s.dataset, "video": s.video_id, "video_path": s.video,
        "question": s.question, "options": list(s.options), "answer": s.answer,
        "answer_letter": None if s.answer is None else LETTERS[s.answer], "qtype": s.qtype,
        "start": s.start, "end": s.end,
    } for s in samples]


def docs_for(dataset: str) -> Callable[[Any], Any]:
    """The task's ``process_docs``: the placeholder split replaced by the annotation file's questions."""

    def process_docs(_placeholder: Any) -> Any:
        import datasets

        return datasets.Dataset.from_list(load_docs(dataset))

    process_docs.__name__ = f"{dataset}_docs"
    return process_docs


def doc_to_visual(doc: dict[str, Any]) -> list[str]:
    """The question's local video file."""
    return [doc["video_path"]]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """The question, then one ``A. option`` line per option, between the task's pre- and post-prompt."""
    kw = lmms_eval_specific_kwargs or {}
    lines = [doc["question"].strip()] if doc["question"].strip() else []
    lines += [f"{LETTERS[i]}. {opt.strip()}" for i, opt in enumerate(doc["options"])]
    return f"{kw.get('pre_prompt', '')}{chr(10).join(lines)}{kw.get('post_prompt', DEFAULT_POST_PROMPT)}"


def doc_to_target(doc: dict[str, Any]) -> str:
    """The gold letter (empty for unlabelled questions)."""
    return doc.get("answer_letter") or ""


def parse_letter(response: str, options: list[str]) -> str | None:
    """The option a free-text answer names: a leading letter (``B``, ``(B)``, ``B.``), else an option's text."""
    valid = LETTERS[: len(options)]
    m = re.match(r"^\W*([A-E])(?:\W|$)", response.strip())
    if m and m.group(1) in valid:
        return m.group(1)
    low = response.strip().lower()
    named = [LETTERS[i] for i, opt in enumerate(options) if opt.strip() and opt.strip().lower() in low]
    return named[0] if len(named) == 1 else None


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """``exact_match``: the parsed letter equals the gold one."""
    text = results[0] if results else ""
    text = getattr(text, "text", text)
    return {"exact_match": float(parse_letter(str(text), doc["options"]) == doc.get("answer_letter"))}
