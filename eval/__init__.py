"""Datasets, scorers and evaluation runs (installed as sevila_tools.eval)."""
