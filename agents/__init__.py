"""Agent integrations (installed as ``sevila_tools.agents``): LangChain tools and an MCP server.

``build_tools`` and ``create_server`` are imported lazily so that importing this package pulls in neither
LangChain nor the MCP SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_tools": "sevila_tools.agents.langchain_tools",
    "create_server": "sevila_tools.agents.mcp_server",
    "ToolService": "sevila_tools.agents.service",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sevila_tools.agents' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
