"""Which project's frame-index format a file is in, from its content (``docs/frames.md`` has the table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: format names of ``sevila convert-frames --to/--from``
FORMATS = ("aks", "bolt", "tspo", "videoitg")


def _first_line(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return json.loads(line)
    return None


def _kind_of_json(data: Any) -> str | None:
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if lists and all(isinstance(e, dict) and "frames" in e for v in lists for e in v[:1]):
            return "bolt"
        if "index" in data and ("doc_id" in data or "logits" in data):
            return "videoitg"
        return None
    if isinstance(data, list) and data:
        if all(isinstance(e, list) for e in data[:3]):
            return "aks"
        if all(isinstance(e, dict) and "frame_idx" in e for e in data[:3]):
            return "tspo"
    return None


def sniff_format(path: str | Path) -> str | None:
    """``sevila``, ``bolt``, ``aks``, ``tspo`` or ``videoitg`` (a folder of ``{doc_id}.json`` or JSON Lines),
    or None when the content matches none of them."""
    p = Path(path)
    if p.is_dir():
        first = next(iter(sorted(p.glob("*.json"))), None)
        return "videoitg" if first is not None and _kind_of_json(_load(first)) == "videoitg" else None
    try:
        data = _load(p)
    except ValueError:
        try:
            line = _first_line(p)
        except (ValueError, UnicodeDecodeError):
            return None
        if isinstance(line, dict) and str(line.get("format", "")).startswith("sevila-frames/"):
            return "sevila"
        return "videoitg" if isinstance(line, dict) and "index" in line and "doc_id" in line else None
    except UnicodeDecodeError:
        return None
    if isinstance(data, dict) and str(data.get("format", "")).startswith("sevila-frames/"):
        return "sevila"  # a file with a single record
    return _kind_of_json(data)


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
