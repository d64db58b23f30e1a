"""Dagster definitions of the ingest domain."""
