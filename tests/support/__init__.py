"""Helpers shared by the integration, end-to-end and chaos suites and the benchmarks."""
