"""Keyframe selectors: the registry (each module of this package, plus entry points) and construction from
declared options (``docs/extending.md``)."""

from __future__ import annotations

from typing import Any

from sevila_tools.errors import InputError
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


def declared_options(name: str) -> list[str]:
    """Option keys the selector ``name`` reads (fields of its ``Options`` model)."""
    return list(get_selector_class(name).Options.model_fields)


def options_for(name: str, shared: dict[str, Any]) -> dict[str, Any]:
    """What selector ``name`` takes from a flat option dict: the keys it declares, where ``NAME.KEY`` (this
    selector only) wins over a plain ``KEY`` (every selector declaring it); ``None`` values are left out."""
    keys = set(declared_options(name))
    out = {k: v for k, v in shared.items() if k in keys and v is not None}
    for k, v in shared.items():
        owner, dot, key = k.partition(".")
        if dot and owner == name and key in keys and v is not None:
            out[key] = v
    return out


def check_option_keys(selectors: list[str], options: dict[str, Any]) -> None:
    """One-line error for an unknown selector, or an option key that none of ``selectors`` declares
    (``NAME.KEY``: ``NAME`` must)."""
    for name in selectors:
        get_selector_class(name)
    for k in options:
        owner, dot, key = k.rpartition(".")
        owners = [owner] if dot else selectors
        if dot:
            get_selector_class(owner)
        known = {o for name in owners for o in declared_options(name)}
        if key not in known:
            valid = ", ".join(sorted(known)) or "none"
            raise InputError(f"no selector of {', '.join(owners)} has the option {key!r} (options: {valid})")


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
    "check_option_keys",
    "declared_options",
    "options_for",
    "get_selector_class",
    "register",
    "topk_sorted",
]
