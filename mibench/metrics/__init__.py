"""Metric definitions and computations (built in the harness issue)."""
