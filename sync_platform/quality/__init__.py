"""quality (no Dagster imports)."""
