"""The production path against the real PostgreSQL server: dlt destination and dagster-postgres storage."""

from __future__ import annotations

import dagster as dg

from sync_platform.core.instance import ensure_dagster_home
from sync_platform.core.warehouse import Warehouse


def test_one_materialization_end_to_end_on_postgres(harness, postgres_db, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_PLATFORM_WAREHOUSE", "postgres")
    monkeypatch.setenv("SYNC_PLATFORM_POSTGRES_DSN", postgres_db)
    monkeypatch.setenv("SYNC_PLATFORM_DAGSTER_PG_URL", postgres_db)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "unused"))
    home = ensure_dagster_home(tmp_path / "dagster_home")
    assert "postgres_url" in (home / "dagster.yaml").read_text()

    from sync_platform.definitions import defs

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = defs().resolve_job_def("hubspot_sync").execute_in_process(instance=instance)
        assert result.success
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        mats = instance.fetch_materializations(dg.AssetKey(["raw", "hubspot", "contacts"]), limit=5).records
        assert mats and mats[0].asset_materialization.metadata["rows_total"].value == 500

    warehouse = Warehouse.from_env()
    assert warehouse.kind == "postgres"
    assert warehouse.query("SELECT count(*), count(DISTINCT id) FROM raw_hubspot.contacts") == [(500, 500)]
    # dlt keeps the cursor in the destination itself
    assert warehouse.query("SELECT count(*) FROM raw_hubspot._dlt_pipeline_state")[0][0] >= 1
