"""Benchmark tooling for ``sevila bench`` (installed as ``sevila_tools.benchmarks``; the library never imports it)."""
