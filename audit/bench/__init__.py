"""Benchmarks run side by side against peer libraries: ``python -m audit.bench NAME``."""
