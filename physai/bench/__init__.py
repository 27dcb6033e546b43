"""Benchmarks as library functions: each returns plain data (dicts and lists of rows) that the
CLI (`physai bench ...`, `physai/cli_bench.py`) prints as rich tables and writes as JSON."""
