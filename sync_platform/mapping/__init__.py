"""mapping (no Dagster imports)."""
