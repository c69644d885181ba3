"""Benchmarks: each writes its section of benchmarks/RESULTS.md through ``benchmarks.report``."""
