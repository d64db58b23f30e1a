"""Dagster instance storage: local files under ``data/dagster_home`` or PostgreSQL.

``ensure_dagster_home`` writes a ``dagster.yaml`` the first time: the embedded default keeps
runs, events and schedules in SQLite files; with ``SYNC_PLATFORM_DAGSTER_PG_URL`` set it uses
dagster-postgres. Either way the ``warehouse_writes`` pool admits one step at a time, because
DuckDB allows a single writer.
"""

from __future__ import annotations

import os
from pathlib import Path

from sync_platform.core.settings import load_settings

_POOLS = """concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""

POSTGRES_YAML = (
    """# dagster-postgres instance storage (runs, events, schedules) for production.
storage:
  postgres:
    postgres_url:
      env: SYNC_PLATFORM_DAGSTER_PG_URL
"""
    + _POOLS
)

LOCAL_YAML = "# Embedded default: SQLite files next to this file.\n" + _POOLS


def ensure_dagster_home(home: Path, postgres: bool | None = None) -> Path:
    """Create ``home`` with a dagster.yaml (kept if already there) and point DAGSTER_HOME at it."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if postgres is None:
        postgres = bool(load_settings().dagster_pg_url)
    if not config.exists():
        config.write_text(POSTGRES_YAML if postgres else LOCAL_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
