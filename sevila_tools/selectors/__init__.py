"""Keyframe selectors: interface, registry and construction.

``build_selector(name, runtime, **options)`` constructs any registered selector; selectors that need models
get them from the runtime (the SeViLA ones) or build/load their own (CLIP, Moment-DETR: tiny random models
when the runtime is the ``tiny-random`` preset).
"""

from __future__ import annotations

import inspect
from typing import Any

from sevila_tools.selectors import builtin as _builtin  # noqa: F401  (registers uniform/random/localizer/oracle)
from sevila_tools.selectors.base import (
    REGISTRY,
    Selection,
    Selector,
    SelectorInput,
    available_selectors,
    get_selector_class,
    register,
    topk_sorted,
)

_OPTIONAL_MODULES = ("clip", "moment_detr", "scene")
for _mod in _OPTIONAL_MODULES:
    try:
        __import__(f"sevila_tools.selectors.{_mod}")
    except ModuleNotFoundError as _exc:  # a selector module that is not there yet
        if _exc.name != f"sevila_tools.selectors.{_mod}":
            raise


def build_selector(name: str, runtime: Any = None, **options: Any) -> Selector:
    """Construct a registered selector. ``from_runtime`` (if the class defines it) receives the runtime;
    otherwise the runtime is passed when the constructor takes one. Unknown options are an error."""
    cls = get_selector_class(name)
    factory = getattr(cls, "from_runtime", None)
    if factory is not None:
        return factory(runtime, **options)
    params = inspect.signature(cls.__init__).parameters
    if "runtime" in params:
        options = {"runtime": runtime, **options}
    return cls(**options)


__all__ = [
    "REGISTRY",
    "Selection",
    "Selector",
    "SelectorInput",
    "available_selectors",
    "build_selector",
    "get_selector_class",
    "register",
    "topk_sorted",
]
