"""Dagster instance storage: local files under ``data/dagster_home`` or PostgreSQL.

``ensure_dagster_home`` writes a ``dagster.yaml`` the first time: the embedded default keeps
runs, events and schedules in SQLite files; with ``SYNC_PLATFORM_DAGSTER_PG_URL`` set it uses
dagster-postgres. Either way the ``warehouse_writes`` pool admits one run at a time
(``granularity: run``): the run queue holds the others, so no waiting run spins. With ``op``
granularity every queued step of every run polled for its slot, and three "Materialize all" runs
with three ``sync_all`` runs took 16 minutes on two cores instead of two. Steps that run without
the queue (``dagster job execute``, parallel steps of one run) take turns at the warehouse itself
(:meth:`Warehouse.turn`), so the pool is an economy, not what keeps DuckDB safe.
"""

from __future__ import annotations

import os
from pathlib import Path

from sync_platform.core.settings import load_settings

_POOLS = """concurrency:
  pools:
    default_limit: 1
    granularity: run
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


_OURS = ("# Embedded default:", "# dagster-postgres instance storage")


def ensure_dagster_home(home: Path, postgres: bool | None = None) -> Path:
    """Create ``home`` with a dagster.yaml and point DAGSTER_HOME at it.

    A dagster.yaml written by an earlier version of this function is brought up to date; one the
    user wrote is kept as it is.
    """
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if postgres is None:
        postgres = bool(load_settings().dagster_pg_url)
    wanted = POSTGRES_YAML if postgres else LOCAL_YAML
    current = config.read_text() if config.exists() else None
    if current is None or (
        current.startswith(_OURS) and current.split("\n", 1)[0] == wanted.split("\n", 1)[0]
    ):
        if current != wanted:
            scratch = config.with_suffix(f".{os.getpid()}.tmp")
            scratch.write_text(wanted)
            scratch.replace(config)  # readers see the old file or the new one, never half of it
    os.environ["DAGSTER_HOME"] = str(home)
    return home
