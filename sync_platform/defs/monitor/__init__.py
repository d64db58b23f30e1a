"""Dagster definitions of the monitor domain."""
