"""SeViLA as LangChain tools (``StructuredTool``) over one shared :class:`ToolService`.

Tool names, arguments, what the model and the artifact receive, and error handling: ``docs/agents.md``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException

from sevila_tools.agents.service import ToolService
from sevila_tools.agents.toolset import SPECS, TOOL_SPECS, ToolSpec, summary_json
from sevila_tools.errors import error_line
from sevila_tools.schemas import DEFAULT_MODEL

log = logging.getLogger("sevila_tools.agents")

__all__ = ["ToolService", "build_tools", "make_tool"]


def make_tool(service: ToolService, spec: ToolSpec | str, thumbnails: bool = True) -> StructuredTool:
    """One LangChain tool for ``spec`` (a :data:`~sevila_tools.agents.toolset.TOOL_SPECS` entry or its name)."""
    if isinstance(spec, str):
        spec = SPECS[spec]
    name = spec.name

    def _pack(result: Any) -> tuple[str, dict[str, Any]]:
        artifact: dict[str, Any] = {"result": result.model_dump(mode="json"), "thumbnails": []}
        if thumbnails:
            artifact["thumbnails"] = service.thumbnails(name, result)
        return summary_json(name, result), artifact

    def request(kwargs: dict[str, Any]) -> Any:
        """LangChain already validated ``kwargs`` against ``args_schema``: build the request without a second pass."""
        return spec.request_model.model_construct(**kwargs)

    def run(**kwargs: Any) -> tuple[str, dict[str, Any]]:
        try:
            result = service.call(name, request(kwargs))
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the model, never raised
            log.debug("tool %s failed", name, exc_info=True)
            raise ToolException(f"{name} failed: {error_line(exc)}") from exc
        return _pack(result)

    async def arun(**kwargs: Any) -> tuple[str, dict[str, Any]]:
        try:
            result = await service.acall(name, request(kwargs))
        except Exception as exc:  # noqa: BLE001
            log.debug("tool %s failed", name, exc_info=True)
            raise ToolException(f"{name} failed: {error_line(exc)}") from exc
        import anyio.to_thread

        return await anyio.to_thread.run_sync(_pack, result)

    run.__name__ = arun.__name__ = name
    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=name,
        description=spec.description,
        args_schema=spec.request_model,
        infer_schema=False,
        response_format="content_and_artifact",
        handle_tool_error=True,
        handle_validation_error=error_line,
    )


def build_tools(
    runtime: Any = None,
    model: str = DEFAULT_MODEL,
    checkpoint: str = "auto",
    device: str = "auto",
    *,
    service: ToolService | None = None,
    allow_dirs: Sequence[str | os.PathLike[str]] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    decoder: str = "auto",
    prompts: str | None = None,
    trust_checkpoint: bool = False,
    names: Sequence[str] | None = None,
    thumbnails: bool = True,
) -> list[BaseTool]:
    """The SeViLA LangChain tools, all sharing one runtime.

    Args:
        runtime: an already loaded :class:`~sevila_tools.runtime.SevilaRuntime` to use; else ``model``,
            ``checkpoint`` and ``device`` are loaded lazily, once, on the first tool call.
        service: share an existing :class:`ToolService` (e.g. with an MCP server) instead of making one.
        allow_dirs: only videos whose real path is under one of these folders are accepted (symlinks are
            resolved); ``None`` accepts any path.
        output_dir: folder for keyframe thumbnails (default: a temporary folder).
        names: subset of tool names to return (default: all six).
        thumbnails: write keyframe thumbnails and return their paths in the artifact.

    Returns:
        ``list_selectors``, ``localize_keyframes``, ``answer_video_question``, ``ask_video``, ``find_moments``,
        ``pseudo_label_frames`` (or the requested subset), in that order. The service is reachable as
        ``tool.metadata["service"]``.
    """
    if service is None:
        service = ToolService(
            runtime, model=model, checkpoint=checkpoint, device=device, trust_checkpoint=trust_checkpoint,
            decoder=decoder, prompts=prompts, allow_dirs=allow_dirs, output_dir=output_dir,
        )
    wanted = list(names) if names is not None else [s.name for s in TOOL_SPECS]
    unknown = [n for n in wanted if n not in SPECS]
    if unknown:
        raise ValueError(f"unknown tool name(s) {unknown}; choose from {list(SPECS)}")
    tools: list[BaseTool] = []
    for n in wanted:
        tool = make_tool(service, SPECS[n], thumbnails=thumbnails)
        tool.metadata = {"service": service}
        tools.append(tool)
    return tools
