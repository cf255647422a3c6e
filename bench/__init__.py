"""Benchmarks: each bench_*.py module prints one JSON line per figure (name, value, unit, target)."""
