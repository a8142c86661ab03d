"""What both lmms-eval models share: one-line exits, ``model_args`` parsing, and a request's question."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

LETTERS = "ABCDE"


class PluginError(SystemExit):
    """A bad model argument or input: one ``error:`` line on stderr and exit status 2.

    lmms-eval catches every ``Exception`` of an evaluation, prints its traceback and exits 0 (unless
    ``--verbosity DEBUG``); a ``SystemExit`` passes through, so a user error ends the run as it should."""

    def __init__(self, message: str) -> None:
        line = " ".join(str(message).split())
        print(f"error: {line}", file=sys.stderr, flush=True)
        super().__init__(2)
        self.message = line

    def __str__(self) -> str:
        return self.message


def as_bool(value: Any) -> bool:
    """``True``/``"true"``/``"1"``... as lmms-eval passes flags in ``model_args``."""
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def parse_inner_args(value: Any) -> dict[str, Any]:
    """The inner model's arguments: a JSON object, or ``k=v`` pairs split by ``;`` (or by ``,`` inside quotes,
    which lmms-eval's own parser keeps together)."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise PluginError(f"inner_args is not valid JSON: {text}") from None
        return dict(data)
    out: dict[str, Any] = {}
    for part in re.split(r"[;,]", text):
        if not part.strip():
            continue
        key, sep, val = part.partition("=")
        if not sep or not key.strip():
            raise PluginError(f"inner_args needs key=value pairs separated by ';', got {part!r}")
        out[key.strip()] = _value(val.strip())
    return out


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass
class DocQuestion:
    """The question of one lmms-eval document, in the fields SeViLA reads."""

    question: str
    options: list[str]
    question_id: str | None = None
    dataset: str | None = None
    start: float | None = None
    end: float | None = None


_OPTION_LINE = re.compile(r"^\s*\(?([A-E])[.):]\s*(.+?)\s*$")


def _from_context(context: str) -> tuple[str, list[str]]:
    """Question and options from a prompt laid out as ``question`` then ``A. option`` lines."""
    lines = [x for x in context.splitlines() if x.strip()]
    options, first = [], None
    for i, line in enumerate(lines):
        m = _OPTION_LINE.match(line)
        if m and m.group(1) == LETTERS[len(options)]:
            first = i if first is None else first
            options.append(m.group(2))
    question = " ".join(lines[:first]) if first else context.strip()
    return question, options


def doc_question(doc: dict[str, Any], context: str, id_field: str = "question_id") -> DocQuestion:
    """Our task pack's fields (``question``, ``options``, ``question_id``, ``dataset``, ``start``, ``end``);
    NExT-QA's ``a0``..``a4``; otherwise the lettered options of the prompt itself."""
    qid = next((str(doc[k]) for k in (id_field, "question_id", "qid") if doc.get(k) is not None), None)
    window = {k: (float(doc[k]) if doc.get(k) is not None else None) for k in ("start", "end")}
    if isinstance(doc.get("options"), list) and "question" in doc:
        return DocQuestion(str(doc["question"]), [str(o) for o in doc["options"]], qid, doc.get("dataset"), **window)
    if all(f"a{i}" in doc for i in range(2)) and "question" in doc:
        options = [str(doc[f"a{i}"]) for i in range(len(LETTERS)) if doc.get(f"a{i}") is not None]
        return DocQuestion(str(doc["question"]), options, qid, doc.get("dataset"), **window)
    question, options = _from_context(context)
    return DocQuestion(question, options, qid, doc.get("dataset"), **window)


def doc_video(visuals: Any) -> str:
    """The single local video path a video task's ``doc_to_visual`` gives."""
    items = visuals if isinstance(visuals, list | tuple) else [visuals]
    paths = [v for v in items if isinstance(v, str)]
    if len(paths) != 1:
        raise PluginError(f"expected one local video per question, got {len(items)} visual(s)")
    return paths[0]
