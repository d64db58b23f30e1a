"""Drift history: status by threshold, append and read back the trend in a real DuckDB warehouse."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sync_platform.core.warehouse import Warehouse
from sync_platform.reconcile import classify
from sync_platform.reconcile.history import drift_row, drift_status, read_history, record_drift
from sync_platform_tests.reconcile.conftest import BASE, seeded_pair


@pytest.mark.parametrize(
    ("share", "status"), [(0.0, "ok"), (0.003, "warn"), (0.005, "warn"), (0.008, "error")]
)
def test_status_against_the_threshold(share, status):
    assert drift_status(share, 0.005) == status


def test_append_and_read_the_trend(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    warehouse = Warehouse("duckdb", path=tmp_path / "data" / "warehouse.duckdb")
    assert read_history(warehouse).is_empty()
    source, warehouse_rows, _ = seeded_pair(n=1000)
    drifted, clean = classify(source, warehouse_rows), classify(source, source)
    first = [
        drift_row(drifted, "salesforce", "contacts", 0.005, checked_at=BASE, run_id="r1"),
        drift_row(clean, "hubspot", "contacts", 0.005, checked_at=BASE, run_id="r1"),
    ]
    assert record_drift(warehouse, first) == 2
    assert (
        record_drift(
            warehouse,
            [
                drift_row(
                    clean, "salesforce", "contacts", 0.005, checked_at=BASE + timedelta(days=1), run_id="r2"
                )
            ],
        )
        == 1
    )
    assert record_drift(warehouse, []) == 0
    trend = read_history(warehouse, crm="salesforce", entity="contacts")
    assert trend["run_id"].to_list() == ["r1", "r2"]
    assert trend["drift_share"].to_list() == [pytest.approx(0.018), 0.0]
    assert trend["status"].to_list() == ["error", "ok"]
    assert trend.row(0, named=True) | {"drift_share": 0} == {
        "checked_at": BASE,
        "crm": "salesforce",
        "entity": "contacts",
        "source_records": 1000,
        "warehouse_records": 1001,
        "missing": 3,
        "extra": 4,
        "stale": 5,
        "diverged": 6,
        "drift_share": 0,
        "threshold": 0.005,
        "status": "error",
        "run_id": "r1",
        "ahead": 2,
        "direction": "crm_to_warehouse",
    }
    assert read_history(warehouse).height == 3
    assert read_history(warehouse, since=BASE + timedelta(hours=1))["run_id"].to_list() == ["r2"]


def test_the_same_history_on_postgresql(tmp_path, monkeypatch):
    import uuid

    import psycopg2

    admin_dsn = "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"sync_platform_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
        warehouse = Warehouse("postgres", dsn=f"postgresql://postgres@127.0.0.1:5432/{name}")
        source, warehouse_rows, _ = seeded_pair(n=100)
        record_drift(
            warehouse,
            [
                drift_row(
                    classify(source, warehouse_rows),
                    "hubspot",
                    "contacts",
                    0.005,
                    checked_at=BASE,
                    run_id="r1",
                )
            ],
        )
        trend = read_history(warehouse, crm="hubspot", since=BASE - timedelta(days=1))
        assert trend.select("checked_at", "missing", "drift_share", "status").rows() == [
            (BASE, 3, pytest.approx(0.18), "error")
        ]
    finally:
        cur = admin.cursor()
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()
