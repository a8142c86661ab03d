"""Command-line interface (installed as sevila_tools.cli)."""
