"""Logs and metrics: the log context and formats, and the Prometheus metrics."""
