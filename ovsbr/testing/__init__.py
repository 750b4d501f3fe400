"""Harness for functional tests, benchmarks and the demo (not product code)."""
