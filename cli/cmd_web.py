"""``sevila web``: the forward chain as a local browser page (Gradio; ``pip install "sevila-tools[web]"``)."""

from __future__ import annotations

import os
import sys
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
    err_console,
    guarded,
    load_runtime_cli,
)

MISSING_GRADIO = 'error: sevila web needs gradio: pip install "sevila-tools[web]"'


def gradio_available() -> bool:
    """True when the optional ``gradio`` package imports."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        return False
    return True


def web(
    model: ModelOpt = DEFAULT_MODEL,
    checkpoint: CheckpointOpt = "auto",
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "auto",
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Interface to bind (default: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", min=1, max=65535, help="TCP port of the page.")
    ] = 7860,
    allow_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-dir",
            metavar="DIR",
            help="Folder whose videos may also be given by path (repeat; default: uploads only). "
            "Symlinks are resolved and must stay inside.",
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", metavar="MB", min=1, help="Largest accepted upload, in MB.")
    ] = 300,
    share: Annotated[
        bool,
        typer.Option("--share/--no-share", help="Also open a public Gradio share link (off by default)."),
    ] = False,
) -> None:
    """Serve a browser demo: upload a video, ask, see keyframes, scores and the answer (model loads once)."""
    if not gradio_available():
        print(MISSING_GRADIO, file=sys.stderr)
        raise typer.Exit(1)
    from sevila_tools.chain import SevilaChain
    from sevila_tools.encoding import MemoryStore
    from sevila_tools.loading import resolve_device
    from sevila_tools.web.app import launch
    from sevila_tools.web.callbacks import WebDemo
    from sevila_tools.web.uploads import real_dirs

    resolve_device(device)  # a bad --device or --allow-dir fails before the model loads
    real_dirs(allow_dir)
    chain = SevilaChain(
        load_runtime_cli(model, checkpoint, device, trust_checkpoint), decoder, store=MemoryStore(16)
    )
    demo_svc = WebDemo(chain, allow_dirs=allow_dir, max_upload_mb=max_upload_mb)
    where = f"http://{host}:{port}"
    err_console.print(f"sevila web: {where} (model {model}; Ctrl+C stops)", highlight=False)
    launch(demo_svc, host=host, port=port, share=share)


def register(app: typer.Typer) -> None:
    """Add ``sevila web`` to the main application."""
    app.command("web")(guarded(web))
