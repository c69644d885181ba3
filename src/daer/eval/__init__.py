"""Evaluation: retrieval, zero-shot and attribute metrics, and benchmarks."""
