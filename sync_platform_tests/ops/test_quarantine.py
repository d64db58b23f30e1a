"""The quarantine's readers bind what the operator types: a crafted entity is a value, never SQL."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.quarantine import keys_of_latest_run, latest, quarantine_rows, record, release

INJECTION = "x' OR 1=1; DROP TABLE ops.canary; SELECT 1 WHERE '1'='1"


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path: Path, monkeypatch) -> Warehouse:
    if request.param == "postgres":
        monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path))  # dlt's pipeline state, for write_frame
        warehouse = Warehouse("postgres", dsn=request.getfixturevalue("postgres_db"))
    else:
        warehouse = Warehouse("duckdb", path=tmp_path / "warehouse.duckdb")
    failures = pl.DataFrame(
        {
            "source_system": ["salesforce", "hubspot"],
            "source_id": ["003A", "101"],
            "rule": ["email_format", "phone_e164"],
            "column": ["email", "phone"],
            "value": ["zoe(at)example.com", "12"],
        }
    )
    record(warehouse, quarantine_rows(failures, "contact", {"salesforce": 3, "hubspot": 1}, "run-1"))
    warehouse.query("CREATE TABLE ops.canary (n INTEGER)")
    warehouse.query("INSERT INTO ops.canary VALUES (1)")
    return warehouse


def _canary_alive(warehouse: Warehouse) -> bool:
    return warehouse.table_exists("ops", "canary") and warehouse.query("SELECT n FROM ops.canary") == [(1,)]


def test_quarantine_list_of_a_crafted_entity_drops_nothing(warehouse):
    """``sync-platform quarantine list --entity E`` once formatted E into the statement."""
    rows = latest(warehouse, INJECTION)
    assert _canary_alive(warehouse), "the crafted --entity ran as SQL"
    assert rows.is_empty(), "no entity has that name: nothing is listed"
    assert latest(warehouse, "contact")["source_id"].sort().to_list() == ["003A", "101"]


def test_the_other_readers_bind_too(warehouse):
    assert keys_of_latest_run(warehouse, INJECTION).is_empty()
    assert release(warehouse, INJECTION, INJECTION) == 0
    assert _canary_alive(warehouse)
    assert keys_of_latest_run(warehouse, "contact").height == 2
    assert latest(warehouse, "contact", limit=1).height == 1
    assert release(warehouse, "hubspot", "101") == 1
