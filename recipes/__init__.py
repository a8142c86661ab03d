"""The paper's training recipes as YAML files (``<task>-<dataset>.yaml``), read by ``sevila_tools.training``."""
