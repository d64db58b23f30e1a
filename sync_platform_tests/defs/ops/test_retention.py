"""Audit-log retention: the daily asset purges what is older than ``audit.retention_days``, and says so."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import yaml

from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.audit import AuditEntry, AuditLog


def test_the_retention_asset_purges_old_entries_and_audits_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SYNC_PLATFORM_WAREHOUSE", raising=False)
    config = tmp_path / "sync.yaml"
    config.write_text(yaml.safe_dump({"audit": {"retention_days": 30}}))
    monkeypatch.setenv("SYNC_PLATFORM_CONFIG", str(config))
    log = AuditLog(Warehouse.from_env())
    now = datetime.now(UTC)
    log.record(
        *(
            AuditEntry(
                run_id=f"old-{age}",
                step="ingest",
                crm="hubspot",
                entity="contacts",
                started_at=now - timedelta(days=age),
                ended_at=now - timedelta(days=age),
            )
            for age in (400, 45, 31, 29, 1)
        )
    )

    from sync_platform.definitions import defs

    loaded = defs()
    schedule = loaded.resolve_schedule_def("audit_retention_schedule")
    assert schedule.cron_schedule == "30 3 * * *" and schedule.job_name == "audit_retention"
    with dg.instance_for_test() as instance:
        result = loaded.resolve_job_def("audit_retention").execute_in_process(instance=instance)
    [mat] = [e.materialization for e in result.get_asset_materialization_events()]
    assert mat.asset_key == dg.AssetKey(["ops", "audit_retention"])
    assert mat.metadata["rows_purged"].value == 3 and mat.metadata["retention_days"].value == 30

    kept = log.entries(step="ingest")["run_id"].to_list()
    assert sorted(kept) == ["old-1", "old-29"]
    [own] = log.entries(step="retention").iter_rows(named=True)
    assert (own["deleted"], own["run_id"], own["entity"]) == (3, result.run_id, "audit_log")
    assert json.loads(own["details"])["retention_days"] == 30


def test_the_asset_takes_its_warehouse_and_config_as_resources_not_from_the_environment(
    tmp_path, monkeypatch
):
    """Resources steer an asset: with the environment pointing elsewhere, the run uses what it is handed."""
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("SYNC_PLATFORM_CONFIG", str(tmp_path / "missing.yaml"))
    config = tmp_path / "sync.yaml"
    config.write_text(yaml.safe_dump({"audit": {"retention_days": 10}}))
    warehouse = Warehouse("duckdb", path=tmp_path / "given.duckdb")
    now = datetime.now(UTC)
    AuditLog(warehouse).record(
        *(
            AuditEntry(
                run_id=f"old-{age}",
                step="ingest",
                crm="hubspot",
                entity="contacts",
                started_at=now - timedelta(days=age),
                ended_at=now - timedelta(days=age),
            )
            for age in (20, 5)
        )
    )

    from sync_platform.defs.ops.assets import audit_retention
    from sync_platform.defs.resources import SyncConfigResource, WarehouseResource

    result = dg.materialize(
        [audit_retention],
        resources={
            "warehouse": WarehouseResource(duckdb_path=str(warehouse.path)),
            "sync_config": SyncConfigResource(path=str(config)),
        },
    )

    [mat] = [e.materialization for e in result.get_asset_materialization_events()]
    assert mat.metadata["rows_purged"].value == 1 and mat.metadata["retention_days"].value == 10
    assert AuditLog(warehouse).entries(step="ingest")["run_id"].to_list() == ["old-5"]
    assert not (tmp_path / "elsewhere" / "warehouse.duckdb").exists()
