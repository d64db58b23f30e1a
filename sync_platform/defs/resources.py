"""The resources every domain's Dagster objects receive, wired once: warehouse, sync config, dlt.

Assets, checks and sensors take ``warehouse: WarehouseResource`` and ``sync_config:
SyncConfigResource`` as parameters instead of reading the environment; tests hand them their
own (``resources={...}``). The defaults come from ``core.settings`` when the definitions load.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster_dlt import DagsterDltResource

from sync_platform.core.config import SyncConfig, load_sync_config
from sync_platform.core.settings import POSTGRES_DSN_ENV, Settings, load_settings
from sync_platform.core.warehouse import DUCKDB, POSTGRES, Warehouse

WAREHOUSE_POOL = "warehouse_writes"
"""Every step that writes to the warehouse runs in this pool (DuckDB admits one writing process)."""


class WarehouseResource(dg.ConfigurableResource):
    """Where synced data lands: the embedded DuckDB file or PostgreSQL (the DSN is read from the
    environment at run time, so the UI shows its variable's name, never its password)."""

    kind: str = DUCKDB
    duckdb_path: str | None = None
    postgres_dsn: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WarehouseResource:
        if settings.warehouse_kind == POSTGRES:
            return cls(kind=POSTGRES, postgres_dsn=dg.EnvVar(POSTGRES_DSN_ENV))  # type: ignore[arg-type]
        return cls(kind=settings.warehouse_kind, duckdb_path=str(settings.warehouse_path))

    def get(self) -> Warehouse:
        if self.kind == POSTGRES:
            return Warehouse(POSTGRES, dsn=self.postgres_dsn)
        # a step waiting for DuckDB's turn says so in its own run log, where the operator looks
        notify = dg.get_dagster_logger("sync_platform.warehouse").info
        return Warehouse(self.kind, path=Path(self.duckdb_path) if self.duckdb_path else None, notify=notify)


class SyncConfigResource(dg.ConfigurableResource):
    """``data/sync.yaml``, read on every use: an edit applies to the next run or sensor tick
    without reloading the code location."""

    path: str

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncConfigResource:
        return cls(path=str(settings.config_path))

    def load(self) -> SyncConfig:
        return load_sync_config(Path(self.path))


def default_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    settings = settings or load_settings()
    return {
        "warehouse": WarehouseResource.from_settings(settings),
        "sync_config": SyncConfigResource.from_settings(settings),
        "dlt": DagsterDltResource(),
    }


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
