"""Dagster objects only, one folder per domain: ingest, canonical, reconcile, monitor."""
