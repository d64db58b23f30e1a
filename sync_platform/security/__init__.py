"""security (no Dagster imports)."""
