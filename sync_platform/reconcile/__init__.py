"""reconcile (no Dagster imports)."""
