"""Monitoring (no Dagster objects): freshness, dead letters, error rate, quality gate, metrics, status."""
