"""Dagster definitions of the reconcile domain."""
