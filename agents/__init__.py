"""Agent integrations (installed as sevila_tools.agents)."""
