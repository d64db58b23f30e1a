"""Reconciliation: compare a CRM listing with the warehouse, classify drift, find cursor anomalies.

Pure logic (polars, DuckDB): no Dagster, no HTTP. The Dagster assets in ``defs/reconcile/`` fetch
the listings and call these functions.
"""

from .diff import AHEAD, ALL_CLASSES, CLASSES, Diff, classify, field_differences
from .hashing import canonical_values, content_hash, content_hash_sql

__all__ = ["AHEAD", "ALL_CLASSES", "CLASSES", "Diff", "canonical_values", "classify", "content_hash",
           "content_hash_sql", "field_differences"]
