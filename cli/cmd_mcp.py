"""``sevila mcp``: serve the SeViLA tools over the Model Context Protocol (stdio, or streamable HTTP with --http).

Under stdio, stdout carries only protocol messages: logs, the random-weights note and library warnings go to
stderr (the MCP SDK also points fd 1 at stderr while serving, so stray native output cannot corrupt the stream).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from sevila_tools.cli.common import (
    DEFAULT_MODEL,
    CheckpointOpt,
    DecoderOpt,
    DeviceOpt,
    ModelOpt,
    TrustOpt,
    guarded,
)


def mcp(
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    allow_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-dir",
            metavar="DIR",
            help="Folder whose videos may be read (repeat; default: the working directory). Paths are resolved "
            "(symlinks followed) and must stay inside one of these folders.",
        ),
    ] = None,
    http: Annotated[
        int | None,
        typer.Option("--http", min=1, max=65535, help="Serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio."),
    ] = None,
    images: Annotated[
        bool, typer.Option("--images", help="Also return keyframe thumbnails as JPEG image content.")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR (stderr).")] = "INFO",
) -> None:
    """Serve the SeViLA tools to MCP clients (Claude Desktop, IDE agents...): stdio by default."""
    from sevila_tools.agents.mcp_server import create_server, serve
    from sevila_tools.agents.service import ToolService
    from sevila_tools.errors import InputError
    from sevila_tools.loading import resolve_device

    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise InputError(f"unknown log level {log_level!r}; use DEBUG, INFO, WARNING or ERROR")
    resolve_device(device)  # a bad --device fails now, not on the first call
    roots = list(allow_dir) if allow_dir else [Path.cwd()]
    service = ToolService(
        model=model, checkpoint=checkpoint, device=device, decoder=decoder, trust_checkpoint=trust_checkpoint,
        allow_dirs=roots,
    )
    server = create_server(service, images=images, log_level=level)
    logging.getLogger("sevila_tools").setLevel(level)
    logging.getLogger("sevila_tools.agents").info(
        "sevila MCP server (%s): model %s, videos under %s",
        f"http://127.0.0.1:{http}/mcp" if http else "stdio", model, ", ".join(str(r) for r in service.allow_dirs or []),
    )
    try:
        serve(server, http_port=http)
    finally:
        service.close(wait=False, cancel_pending=True)


def register(app: typer.Typer) -> None:
    """Add ``sevila mcp`` to the main application."""
    app.command("mcp")(guarded(mcp))
