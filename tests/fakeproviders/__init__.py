"""Strict fake servers of the Seedream provider APIs, on 127.0.0.1, for tests and benchmarks."""
