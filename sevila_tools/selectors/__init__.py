"""Keyframe selectors: registry and construction from declared options (``docs/extending.md``)."""

from __future__ import annotations

from typing import Any

from sevila_tools.errors import InputError
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


def _discover() -> None:
    """Import every module of this package so its ``@register`` lines run: a new selector is one new file."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()


def declared_options(name: str) -> list[str]:
    """Option keys the selector ``name`` reads (fields of its ``Options`` model)."""
    return list(get_selector_class(name).Options.model_fields)


def options_for(name: str, shared: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``shared`` (flat option namespace, e.g. every CLI selector flag) that ``name`` declares."""
    keys = set(declared_options(name))
    return {k: v for k, v in shared.items() if k in keys and v is not None}


def build_selector(name: str, runtime: Any = None, **options: Any) -> Selector:
    """Construct a registered selector from its declared options (unknown keys are a one-line error)."""
    from pydantic import ValidationError

    cls = get_selector_class(name)
    unknown = sorted(set(options) - set(cls.Options.model_fields))
    if unknown:
        valid = ", ".join(cls.Options.model_fields) or "none"
        raise InputError(f"selector {name!r} has no option {', '.join(unknown)}; its options: {valid}")
    try:
        opts = cls.Options.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputError(f"selector {name!r} option {where}: {err['msg']}") from None
    return cls.create(runtime, opts)


__all__ = [
    "REGISTRY",
    "Selection",
    "Selector",
    "SelectorInput",
    "available_selectors",
    "build_selector",
    "declared_options",
    "options_for",
    "get_selector_class",
    "register",
    "topk_sorted",
]
