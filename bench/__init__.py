"""Benchmarks: measure, never assert. Run with `make bench`."""
