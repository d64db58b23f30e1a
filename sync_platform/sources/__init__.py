"""sources (no Dagster imports)."""
