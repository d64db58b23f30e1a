"""The sources on their own: plain dlt pipelines into DuckDB against the sandbox over HTTP, no Dagster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest
from dlt.common.pipeline import LoadInfo

from sync_platform.ingest.connections import crm_settings
from sync_platform.sandbox import SandboxServer


class DuckPipeline:
    """A plain ``dlt.pipeline`` into a throwaway DuckDB file, with the reads the source tests assert on."""

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.pipeline = dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.duckdb(str(tmp_path / f"{name}.duckdb")),
            dataset_name="raw",
            pipelines_dir=str(tmp_path / "pipelines"),
        )

    def run(self, source: Any) -> LoadInfo:
        info = self.pipeline.run(source)
        assert not info.has_failed_jobs, info
        return info

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        with self.pipeline.sql_client() as client:
            return [tuple(row) for row in client.execute_sql(sql, *params)]

    def declared_types(self, table: str, *columns: str) -> dict[str, str]:
        """Column -> dlt data type, as the source's hints (and the data) declared them."""
        declared = self.table(table)["columns"]
        return {name: declared[name]["data_type"] for name in columns}

    def extracted(self, table: str) -> int:
        """Rows of ``table`` the last run read from the CRM (what reached normalization)."""
        return self.pipeline.last_trace.last_normalize_info.row_counts.get(table, 0)

    def table(self, table: str) -> dict[str, Any]:
        """The table as dlt's schema declares it (columns, write disposition)."""
        return self.pipeline.default_schema.get_table(table)

    def warehouse_types(self, table: str) -> dict[str, str]:
        """Column -> DuckDB type, as created in the warehouse."""
        return dict(
            self.rows(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                self.pipeline.dataset_name,
                table,
            )
        )

    def resource_state(self, source: str, resource: str) -> dict[str, Any]:
        """What dlt keeps for a resource between runs (incremental cursor, delta token)."""
        return self.pipeline.state["sources"][source]["resources"][resource]


@pytest.fixture
def duck(tmp_path: Path) -> Callable[[str], DuckPipeline]:
    return lambda name: DuckPipeline(name, tmp_path)


@pytest.fixture
def settings_of(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], dict[str, Any]]:
    """How a source reaches the test's sandbox: the settings ``ingest.connections`` hands the sources."""
    monkeypatch.setenv("SYNC_PLATFORM_SANDBOX_URL", sandbox.base_url)
    monkeypatch.delenv("SYNC_PLATFORM_SANDBOX_CA", raising=False)

    def settings(crm: str) -> dict[str, Any]:
        found = crm_settings(crm)
        assert found is not None
        return found

    return settings


def listed(source: Any, table: str) -> pa.Table:
    """Every page one listing resource yields, as one Arrow table (no pipeline, no destination)."""
    return pa.concat_tables(list(source.resources[table]))
