"""Reconciliation: compare a CRM listing with the warehouse, classify drift, find cursor anomalies.

Pure logic (polars, DuckDB): no Dagster, no HTTP. The Dagster assets in ``defs/reconcile/`` fetch
the listings and call these functions; ``sql`` runs the comparison inside the warehouse,
``history`` keeps the drift trend and ``report`` renders it (markdown and a standalone HTML page).
"""

from sync_platform.reconcile.anomalies import ANOMALIES, Anomaly, cursor_anomalies
from sync_platform.reconcile.diff import AHEAD, ALL_CLASSES, CLASSES, Diff, classify, field_differences
from sync_platform.reconcile.hashing import canonical_values, content_hash, content_hash_sql

__all__ = [
    "AHEAD",
    "ALL_CLASSES",
    "ANOMALIES",
    "CLASSES",
    "Anomaly",
    "Diff",
    "canonical_values",
    "classify",
    "content_hash",
    "content_hash_sql",
    "cursor_anomalies",
    "field_differences",
]
