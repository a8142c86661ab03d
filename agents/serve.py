"""``sevila mcp`` as one config and one run: the SeViLA tools served over MCP (stdio or streamable HTTP)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pydantic import ConfigDict, Field

from sevila_tools.errors import InputError, require
from sevila_tools.schemas import ModelOptions

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class McpConfig(ModelOptions):
    """The model, the folders whose videos the server may read, and how clients reach it."""

    model_config = ConfigDict(extra="forbid")

    allow_dir: list[Path] | None = Field(None, description="Folder whose videos may be read (default: the "
                                         "working directory); symlinks must stay inside.",
                                         json_schema_extra={"cli": {"flags": ["--allow-dir"], "metavar": "DIR"}})
    http: int | None = Field(None, ge=1, le=65535, json_schema_extra={"cli": {"metavar": "PORT"}},
                             description="Serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio.")
    images: bool = Field(False, description="Also return keyframe thumbnails as JPEG image content.",
                         json_schema_extra={"cli": {"flags": ["--images"]}})
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR (stderr).",
                           json_schema_extra={"cli": {"metavar": "LEVEL"}})


def run_mcp(cfg: McpConfig, *, on_status: Callable[[str], None] | None = None) -> None:
    """Serve until the client disconnects (stdio) or Ctrl-C (HTTP); settings are checked before anything loads."""
    from sevila_tools.agents.service import ToolService
    from sevila_tools.loading import resolve_device

    level = cfg.log_level.upper()
    if level not in LEVELS:
        raise InputError(f"unknown log level {cfg.log_level!r}; use DEBUG, INFO, WARNING or ERROR")
    resolve_device(cfg.device)  # a bad --device fails now, not on the first call
    service = ToolService(**cfg.model_dump(include=set(ModelOptions.model_fields)),
                          allow_dirs=cfg.allow_dir or [Path.cwd()])
    require("mcp", "agents", "sevila mcp")
    from sevila_tools.agents.mcp_server import create_server, serve

    server = create_server(service, images=cfg.images, log_level=level)
    logging.getLogger("sevila_tools").setLevel(level)
    where = f"http://127.0.0.1:{cfg.http}/mcp" if cfg.http else "stdio"
    logging.getLogger("sevila_tools.agents").info("sevila MCP server (%s): model %s, videos under %s", where,
                                                  cfg.model, ", ".join(map(str, service.allow_dirs or [])))
    try:
        serve(server, http_port=cfg.http)
    finally:
        service.close(wait=False, cancel_pending=True)


__all__ = ["McpConfig", "run_mcp"]
