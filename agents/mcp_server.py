"""SeViLA tools over the Model Context Protocol (``MCPServer`` of the official ``mcp`` SDK).

Schemas, results, concurrency, path checks and transports: ``docs/agents.md``, "MCP server".
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, WithJsonSchema

from sevila_tools.agents.service import ToolService
from sevila_tools.agents.toolset import TOOL_SPECS, ToolSpec, summary_json
from sevila_tools.errors import error_line
from sevila_tools.schemas import DEFAULT_MODEL

log = logging.getLogger("sevila_tools.agents")

SERVER_NAME = "sevila"
INSTRUCTIONS = (
    "SeViLA video tools: localize the keyframes of a video that matter for a question (localize_keyframes), "
    "answer multiple-choice (answer_video_question) or open-ended (ask_video) questions about a local video file, "
    "and pseudo-label frames for a known answer. Videos are file paths on the server, restricted to its allowed "
    "folders; times are in seconds."
)


def _signature(model: type[BaseModel], result_model: type[BaseModel]) -> inspect.Signature:
    """A keyword-only signature mirroring ``model``'s fields.

    Each parameter carries the field's bare type (so the SDK parses JSON-encoded values correctly) and, as its
    published JSON schema, exactly the request model's property schema (limits, defaults, descriptions). Limits and
    cross-field rules are then checked by the request model itself, which gives one-line error messages.
    """
    props = model.model_json_schema()["properties"]
    params = []
    for name, field in model.model_fields.items():
        annotation: Any = Annotated[field.annotation, WithJsonSchema(props[name])]
        default = inspect.Parameter.empty if field.is_required() else field.get_default(call_default_factory=True)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return inspect.Signature(params, return_annotation=Annotated[CallToolResult, result_model])


def _image_blocks(paths: list[str]) -> list[ImageContent]:
    blocks = []
    for p in paths:
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        blocks.append(ImageContent(type="image", data=data, mime_type="image/jpeg"))
    return blocks


def _tool_function(service: ToolService, spec: ToolSpec, images: bool) -> Any:
    name = spec.name

    async def tool(**kwargs: Any) -> CallToolResult:
        try:
            result = await service.acall(name, kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the client as an isError result
            log.debug("tool %s failed", name, exc_info=True)
            raise ToolError(error_line(exc)) from exc
        content: list[Any] = [TextContent(type="text", text=summary_json(name, result))]
        if images:
            import anyio.to_thread

            paths = await anyio.to_thread.run_sync(service.thumbnails, name, result)
            content.extend(_image_blocks(paths))
        return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))

    tool.__name__ = name
    tool.__qualname__ = name
    tool.__doc__ = spec.description
    tool.__signature__ = _signature(spec.request_model, spec.result_model)  # type: ignore[attr-defined]
    return tool


def create_server(
    service: ToolService | None = None,
    *,
    model: str = DEFAULT_MODEL,
    checkpoint: str = "auto",
    device: str = "auto",
    decoder: str = "auto",
    trust_checkpoint: bool = False,
    allow_dirs: Sequence[str | os.PathLike[str]] | None = None,
    images: bool = False,
    warm_up: bool = True,
    log_level: str = "INFO",
) -> MCPServer:
    """An MCP server exposing the SeViLA tools over one shared :class:`ToolService`.

    Args:
        service: the service to serve (its runtime, allow-list and worker); else one is made from ``model``,
            ``checkpoint``, ``device``, ``decoder`` and ``allow_dirs`` (default: the working directory; pass the
            folders holding your videos).
        images: also return the keyframes as JPEG image content blocks.
        warm_up: start loading the model in the background when the server starts (else on the first call).
        log_level: level of the SDK's log messages (stderr).
    """
    if service is None:
        service = ToolService(
            model=model, checkpoint=checkpoint, device=device, decoder=decoder, trust_checkpoint=trust_checkpoint,
            allow_dirs=list(allow_dirs) if allow_dirs else [Path.cwd()],
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        if warm_up:
            service.warm_up()  # after the transport owns stdout; errors surface on the first call
        yield

    server: MCPServer = MCPServer(
        SERVER_NAME, instructions=INSTRUCTIONS, lifespan=lifespan, log_level=log_level.upper(),  # type: ignore[arg-type]
    )
    for spec in TOOL_SPECS:
        server.add_tool(
            _tool_function(service, spec, images),
            name=spec.name,
            description=spec.description,
            annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
            structured_output=True,
        )
    server.sevila_service = service  # type: ignore[attr-defined]
    return server


def quiet_libraries() -> None:
    """Progress bars and library warnings off stdout (they go to stderr or nowhere)."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def serve(server: MCPServer, http_port: int | None = None, host: str = "127.0.0.1") -> None:
    """Run ``server`` on stdio (default) or streamable HTTP at ``http://host:port/mcp``."""
    quiet_libraries()
    if http_port is None:
        server.run("stdio")
    else:
        log.info("serving MCP over streamable HTTP at http://%s:%d/mcp", host, http_port)
        server.run("streamable-http", host=host, port=http_port)


__all__ = ["create_server", "quiet_libraries", "serve"]
