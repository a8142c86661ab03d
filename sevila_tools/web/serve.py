"""``sevila web`` as one config and one run: the forward chain as a local browser page (Gradio extra)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pydantic import ConfigDict, Field

from sevila_tools.errors import require
from sevila_tools.schemas import ModelOptions


class WebConfig(ModelOptions):
    """The model, where the page is served and what it accepts."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to bind (default: this machine only).",
                      json_schema_extra={"cli": {"metavar": "HOST"}})
    port: int = Field(7860, ge=1, le=65535, description="TCP port of the page.",
                      json_schema_extra={"cli": {"metavar": "PORT"}})
    allow_dir: list[Path] | None = Field(None, description="Folder whose videos may also be given by path "
                                         "(default: uploads only); symlinks must stay inside.",
                                         json_schema_extra={"cli": {"flags": ["--allow-dir"], "metavar": "DIR"}})
    max_upload_mb: float = Field(300, ge=1, description="Largest accepted upload, in MB.",
                                 json_schema_extra={"cli": {"metavar": "MB"}})
    share: bool = Field(False, description="Also open a public Gradio share link.")


def run_web(cfg: WebConfig, *, on_status: Callable[[str], None] | None = None) -> None:
    """Load the model once and serve the page until Ctrl-C (settings are checked before the model loads)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    require("gradio", "web", "sevila web")
    from sevila_tools.chain import SevilaChain
    from sevila_tools.encoding import MemoryStore
    from sevila_tools.loading import load_runtime, resolve_device
    from sevila_tools.web.app import launch
    from sevila_tools.web.callbacks import WebDemo
    from sevila_tools.web.uploads import real_dirs

    resolve_device(cfg.device)  # a bad --device or --allow-dir fails before the model loads
    real_dirs(cfg.allow_dir)
    (on_status or (lambda msg: None))(f"loading {cfg.model} ...")
    rt = load_runtime(cfg.model, cfg.checkpoint, device=cfg.device, trust_checkpoint=cfg.trust_checkpoint)
    demo = WebDemo(SevilaChain(rt, cfg.decoder, store=MemoryStore(16)), allow_dirs=cfg.allow_dir,
                   max_upload_mb=cfg.max_upload_mb)
    (on_status or (lambda msg: None))(f"sevila web: http://{cfg.host}:{cfg.port} (model {cfg.model}; Ctrl+C stops)")
    launch(demo, host=cfg.host, port=cfg.port, share=cfg.share)


__all__ = ["WebConfig", "run_web"]
