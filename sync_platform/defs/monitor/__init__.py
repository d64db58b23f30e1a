"""Dagster definitions of the monitor domain: freshness checks, alert sensors, sync metrics."""
