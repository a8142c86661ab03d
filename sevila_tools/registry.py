"""One generic plugin registry: named objects found in a package's modules and in Python entry points.

Every plugin kind (selectors, answer strategies, prompt styles, datasets, training tasks) is one :class:`Registry`
instance in its own layer; :mod:`sevila_tools.plugins` gathers them. A registry looks like a read-only mapping
``name -> plugin`` whose lookups find the plugins on first use: it imports every public module of its package (each
module registers what it defines) and loads the entry points of its group, so a separate distribution adds a
plugin by declaring, e.g., ``[project.entry-points."sevila_tools.selectors"] mine = "my_pkg.selectors:Mine"``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Generic, TypeVar

from sevila_tools.errors import InputError, error_line

T = TypeVar("T")
log = logging.getLogger("sevila_tools.plugins")


class UnknownPlugin(InputError, KeyError):
    """A name no plugin of the kind is registered under (an :class:`InputError` and a ``KeyError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class PluginInfo:
    """What listings show about one plugin."""

    kind: str
    name: str
    description: str
    source: str  # the module that defines it, or "distribution version" for entry points
    metadata: dict[str, Any] = field(default_factory=dict)


def _name_of(obj: Any) -> str:
    return str(obj.name)


def _description_of(obj: Any) -> str:
    return " ".join(str(getattr(obj, "description", "") or "").split())


class Registry(Mapping[str, T], Generic[T]):
    """Named plugins of one kind.

    Args:
        kind: singular noun used in messages (``selector`` -> "unknown selector 'x'; choose one of: ...").
        group: Python entry-point group read on first use (``sevila_tools.selectors``).
        package: package whose public modules are imported on first use (``None``: none).
        skip: module names of ``package`` not to import (e.g. the one defining the base class).
        key: the name of a plugin object (default: its ``name`` attribute).
        normalize: turns a looked-up name into a key (e.g. ``str.lower`` for case-insensitive names).
        order: sort key of listings (default: the name).
        check: called with ``(plugin, plugins registered so far)`` before a plugin is added; raises ``ValueError``
            to refuse it.
        info: extra listing metadata of a plugin (``dict``).
    """

    def __init__(
        self,
        kind: str,
        group: str,
        *,
        package: str | None = None,
        skip: Iterable[str] = (),
        key: Callable[[Any], str] = _name_of,
        normalize: Callable[[str], str] = str,
        order: Callable[[Any], Any] | None = None,
        check: Callable[[Any, dict[str, T]], None] | None = None,
        info: Callable[[Any], dict[str, Any]] | None = None,
    ) -> None:
        self.kind, self.group, self.package, self.skip = kind, group, package, frozenset(skip)
        self._key, self._normalize, self._order, self._check, self._info = key, normalize, order, check, info
        self._items: dict[str, T] = {}
        self._sources: dict[str, str] = {}
        self.failed: dict[str, str] = {}  # entry point -> why it could not be loaded
        self._discovered = False

    # ------------------------------------------------------------------------------------------ registration
    def register(self, obj: T) -> T:
        """Add ``obj`` under its name (usable as a class decorator); a taken name is a ``ValueError``."""
        name = self._normalize(self._key(obj))
        if not name or name != name.strip():
            raise ValueError(f"{self.kind} name {name!r} must be a non-empty word")
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        if self._check is not None:
            self._check(obj, dict(self._items))
        self._items[name] = obj
        self._sources.setdefault(name, getattr(obj, "__module__", "") or type(obj).__module__)
        return obj

    def pop(self, name: str, *default: Any) -> Any:
        """Remove and return the plugin ``name`` (tests and interactive use)."""
        self._sources.pop(self._normalize(name), None)
        return self._items.pop(self._normalize(name), *default)

    @contextlib.contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Within the block, registrations are undone afterwards (tests)."""
        self.discover()
        items, sources = dict(self._items), dict(self._sources)
        try:
            yield self
        finally:
            self._items, self._sources = items, sources

    # ------------------------------------------------------------------------------------------ discovery
    def discover(self) -> None:
        """Import the package's public modules and load the entry points (once)."""
        if self._discovered:
            return
        self._discovered = True
        if self.package is not None:
            pkg = importlib.import_module(self.package)
            for mod in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
                if not mod.name.startswith("_") and mod.name not in self.skip:
                    importlib.import_module(f"{self.package}.{mod.name}")
        for ep in metadata.entry_points(group=self.group):
            self._load_entry_point(ep)

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        where = f"{dist.name} {dist.version}" if dist is not None else ep.value
        try:
            obj = ep.load()
            if not isinstance(obj, ModuleType) and not any(v is obj for v in self._items.values()):
                self.register(obj)
        except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not break the others
            self.failed[ep.name] = error_line(exc)
            log.warning("%s plugin %r from %s could not be loaded: %s", self.kind, ep.name, where, exc)
            return
        for name, value in self._items.items():
            if value is obj or getattr(value, "__module__", None) == getattr(obj, "__name__", None):
                self._sources[name] = where

    # ------------------------------------------------------------------------------------------ lookups
    def __getitem__(self, name: str) -> T:
        self.discover()
        key = self._normalize(str(name).strip())
        if key not in self._items:
            raise UnknownPlugin(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._items[key]

    def __contains__(self, name: object) -> bool:
        self.discover()
        return isinstance(name, str) and self._normalize(name.strip()) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.discover()
        return len(self._items)

    def names(self, filter: str | Iterable[str] | Callable[[T], bool] | None = None) -> list[str]:
        """Registered names in listing order; ``filter``: shell pattern(s) like ``"clip*"`` or a predicate."""
        self.discover()
        items = sorted(self._items.items(), key=lambda kv: self._order(kv[1]) if self._order else kv[0])
        if filter is None:
            return [k for k, _ in items]
        if callable(filter):
            return [k for k, v in items if filter(v)]
        patterns = [filter] if isinstance(filter, str) else list(filter)
        return [k for k, _ in items if any(fnmatch.fnmatchcase(k, p) for p in patterns)]

    def info(self, name: str) -> PluginInfo:
        """Name, description, where it comes from and the kind's own metadata."""
        obj = self[name]
        key = self._normalize(str(name).strip())
        extra = self._info(obj) if self._info else {}
        return PluginInfo(self.kind, key, _description_of(obj), self._sources.get(key, ""), extra)

    def infos(self, filter: str | Iterable[str] | Callable[[T], bool] | None = None) -> list[PluginInfo]:
        """:meth:`info` of every plugin :meth:`names` lists."""
        return [self.info(n) for n in self.names(filter)]

    def help(self, prefix: str = "") -> str:
        """``prefix`` followed by the registered names, for help texts."""
        return f"{prefix}{', '.join(self.names())}."

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._items)} registered)"


__all__ = ["PluginInfo", "Registry", "UnknownPlugin"]
