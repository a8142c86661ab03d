"""Process-wide memos of the CLIP / Moment-DETR selectors: loaded models and computed frame features.

Why and how they are keyed: ``docs/selectors.md`` (section "Sharing models and features").
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, MutableMapping
from pathlib import Path
from typing import Any

__all__ = [
    "FEATURE_MEMO_SIZE",
    "FeatureMemo",
    "clear_selector_memos",
    "feature_memo",
    "file_identity",
    "lookup_or_compute",
    "model_token",
    "path_fingerprint",
    "selector_memo_stats",
    "shared_model",
]

FEATURE_MEMO_SIZE = 256  # entries (one entry = the features of one video's candidates or clip grid)

_LOCK = threading.RLock()
_MODELS: dict[Hashable, Any] = {}
_MODEL_LOADS = 0
_TOKENS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_TOKEN_IDS = itertools.count(1)


class FeatureMemo(MutableMapping):
    """A bounded least-recently-used mapping that counts reads (``hits``) and writes (``stores``)."""

    def __init__(self, maxsize: int = FEATURE_MEMO_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.stores = 0
        self.evictions = 0

    def __getitem__(self, key: Hashable) -> Any:
        with self._lock:
            value = self._data[key]
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def __setitem__(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            self.stores += 1
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
                self.evictions += 1

    def __delitem__(self, key: Hashable) -> None:
        with self._lock:
            del self._data[key]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __iter__(self):
        with self._lock:
            return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._data.clear()
            self.hits = self.stores = self.evictions = 0

    def stats(self) -> dict[str, int]:
        """``entries``, ``hits``, ``stores`` (features computed), ``evictions`` and ``maxsize``."""
        return {
            "entries": len(self._data),
            "hits": self.hits,
            "stores": self.stores,
            "evictions": self.evictions,
            "maxsize": self.maxsize,
        }


_FEATURES = FeatureMemo()


def feature_memo() -> FeatureMemo:
    """The process-wide feature memo used by selectors built without their own ``feature_cache``."""
    return _FEATURES


def lookup_or_compute(store: MutableMapping, key: Hashable, compute: Callable[[], Any]) -> Any:
    """``store[key]`` if present, else ``compute()`` stored under ``key`` (one read or one write)."""
    if key in store:
        return store[key]
    value = compute()
    store[key] = value
    return value


def model_token(model: Any) -> str:
    """A process-unique name of a model object (never reused, unlike ``id``), used in feature keys."""
    with _LOCK:
        token = _TOKENS.get(model)
        if token is None:
            token = f"{type(model).__name__}#{next(_TOKEN_IDS)}"
            _TOKENS[model] = token
        return token


def shared_model(key: Hashable, load: Callable[[], Any]) -> Any:
    """The model memoised under ``key`` (model id or checkpoint identity, device, trust), loaded once.

    ``load`` returns the model or a tuple whose first item is the model; failures are not memoised.
    """
    global _MODEL_LOADS
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        value = load()
        _MODELS[key] = value
        _MODEL_LOADS += 1
        first = value[0] if isinstance(value, tuple) else value
        _TOKENS[first] = f"memo:{key!r}"
        return value


def file_identity(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    """``(absolute path, size, mtime_ns)`` of a file; size and mtime are -1 when it cannot be read."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError:
        return str(p.absolute()), -1, -1
    return str(p.resolve()), int(st.st_size), int(st.st_mtime_ns)


def path_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Identity of a weights file or folder: path, size and mtime (of each top-level file of a folder)."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file())
        return {
            "path": str(p.resolve()),
            "files": {f.name: list(file_identity(f)[1:]) for f in files},
        }
    full, size, mtime = file_identity(p)
    return {"path": full, "size": size, "mtime_ns": mtime}


def selector_memo_stats() -> dict[str, Any]:
    """Counters of the process-wide memos: ``models`` (held), ``model_loads`` and the feature memo's stats."""
    with _LOCK:
        return {"models": len(_MODELS), "model_loads": _MODEL_LOADS, "features": _FEATURES.stats()}


def clear_selector_memos() -> None:
    """Forget every memoised model and feature (e.g. to free memory); later selections reload them."""
    global _MODEL_LOADS
    with _LOCK:
        _MODELS.clear()
        _MODEL_LOADS = 0
        _FEATURES.clear()
