"""The five plugin registries in one place (each lives in its own layer and is imported on first use).

>>> from sevila_tools import plugins
>>> plugins.selectors.names()            # doctest: +SKIP
['uniform', 'random', 'clip', 'scene', 'moment_detr', 'localizer', 'oracle']
>>> plugins.datasets["nextqa"].default_frames  # doctest: +SKIP
32

Each registry imports the modules of its package and loads the Python entry points of its group on first lookup:

=================  ==================================  =============================================
attribute          entry-point group                   what a plugin is
=================  ==================================  =============================================
``selectors``      ``sevila_tools.selectors``          a :class:`~sevila_tools.selectors.Selector` subclass
``answerers``      ``sevila_tools.answerers``          an :class:`~sevila_tools.answering.AnswerStrategy` subclass
``prompt_styles``  ``sevila_tools.prompt_styles``      a :class:`~sevila_tools.prompts.PromptStyle`
``datasets``       ``sevila_tools.datasets``           a :class:`~sevila_tools.eval.datasets.DatasetSpec`
``training_tasks`` ``sevila_tools.training_tasks``     a :class:`~sevila_tools.training.TrainingTask` subclass
=================  ==================================  =============================================

An entry point names the plugin object (registered under its ``name``) or a module that registers its plugins
when imported (``docs/extending.md``, "A plugin in its own distribution").
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from sevila_tools.registry import PluginInfo, Registry, UnknownPlugin

KINDS: tuple[str, ...] = ("selectors", "answerers", "prompt_styles", "datasets", "training_tasks")


def _selectors() -> Registry[Any]:
    from sevila_tools.selectors import REGISTRY

    return REGISTRY


def _answerers() -> Registry[Any]:
    from sevila_tools.answering import ANSWER_STRATEGIES

    return ANSWER_STRATEGIES


def _prompt_styles() -> Registry[Any]:
    from sevila_tools.prompts import PROMPT_STYLES

    return PROMPT_STYLES


def _datasets() -> Registry[Any]:
    from sevila_tools.eval.datasets._spec import _REGISTRY

    return _REGISTRY


def _training_tasks() -> Registry[Any]:
    from sevila_tools.training.tasks import TASKS

    return TASKS


_LOADERS = {"selectors": _selectors, "answerers": _answerers, "prompt_styles": _prompt_styles,
            "datasets": _datasets, "training_tasks": _training_tasks}


def registry(kind: str) -> Registry[Any]:
    """The registry of ``kind`` (one of :data:`KINDS`; the singular also works: ``selector``)."""
    key = kind if kind in _LOADERS else f"{kind}s"
    if key not in _LOADERS:
        raise UnknownPlugin(f"unknown plugin kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return _LOADERS[key]()


class PluginQuery(BaseModel):
    """Which plugins to list (``sevila selectors [PATTERN]``)."""

    pattern: str | None = Field(None, description="Only names matching this shell pattern, e.g. 'clip*'.",
                                json_schema_extra={"cli": {"argument": True, "metavar": "[PATTERN]"}})


def describe_selectors(query: PluginQuery) -> dict[str, dict[str, Any]]:
    """Each selector matching ``query``: description, the package it comes from, and its metadata (options)."""
    return {i.name: {"description": i.description, "source": i.source, **i.metadata}
            for i in registry("selectors").infos(query.pattern)}


def __getattr__(name: str) -> Registry[Any]:
    if name in _LOADERS:
        return _LOADERS[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["KINDS", "PluginInfo", "PluginQuery", "Registry", "UnknownPlugin", "describe_selectors", "registry", *KINDS]
