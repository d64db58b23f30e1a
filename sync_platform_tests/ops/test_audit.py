"""The audit log on DuckDB and on the real PostgreSQL server: record, list, redact, purge, erase."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.audit import ERASED, AuditEntry, AuditLog
from sync_platform.security.redaction import pii_hash

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def entry(
    step: str = "ingest",
    crm: str | None = "salesforce",
    entity: str = "contacts",
    age_days: float = 0,
    **fields: object,
) -> AuditEntry:
    ended = NOW - timedelta(days=age_days)
    return AuditEntry(
        run_id="run-1",
        step=step,
        crm=crm,
        entity=entity,
        started_at=ended - timedelta(seconds=3),
        ended_at=ended,
        **fields,
    )  # type: ignore[arg-type]


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(Warehouse("duckdb", path=tmp_path / "warehouse.duckdb"))


def test_entries_are_recorded_and_listed_newest_first_with_filters(log):
    assert log.entries().is_empty(), "no table yet is an empty log, not an error"
    log.record(
        entry(records_read=10, inserted=4, updated=5, deleted=1, age_days=1),
        entry(
            step="canonical",
            crm=None,
            entity="contact",
            records_read=9,
            rejected=1,
            changed_fields={"title": 3, "email": 1},
            status="blocked",
            error_class="gate",
        ),
        entry(crm="hubspot", age_days=0.5),
    )
    rows = log.entries()
    assert rows.height == 3 and rows["crm"].to_list() == [None, "hubspot", "salesforce"]
    assert rows["started_at"].dtype.time_zone == "UTC"
    newest = rows.row(0, named=True)
    assert json.loads(newest["changed_fields"]) == {"email": 1, "title": 3}
    assert (newest["status"], newest["error_class"], newest["rejected"]) == ("blocked", "gate", 1)
    first = log.entries(step="ingest", crm="salesforce").row(0, named=True)
    assert (first["records_read"], first["inserted"], first["updated"], first["deleted"]) == (10, 4, 5, 1)
    assert log.entries(entity="contact").height == 1 and log.entries(limit=1).height == 1


def test_details_are_redacted_before_they_are_stored(log):
    log.record(
        entry(
            status="failed",
            error_class="server_error",
            details={
                "error": "rejected ann.lee@example.com, call +1 415 555 0123",
                "email": "bob@example.org",
                "sample": [{"first_name": "Annabel", "old": pii_hash("x"), "count": 3}],
            },
        )
    )
    stored = log.warehouse.query("SELECT details FROM ops.audit_log")[0][0]
    assert (
        "ann.lee@example.com" not in stored and "bob@example.org" not in stored and "555 0123" not in stored
    )
    assert "Annabel" not in stored, "a value under a PII key is masked even when it does not look like PII"
    details = json.loads(stored)
    assert details["sample"][0]["old"] == pii_hash("x") and details["sample"][0]["count"] == 3


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status"):
        entry(status="ok")


def test_purge_deletes_only_entries_older_than_the_retention(log):
    assert log.purge_older_than(400, now=NOW) == 0
    log.record(entry(age_days=500), entry(age_days=401), entry(age_days=399), entry())
    assert log.purge_older_than(400, now=NOW) == 2
    assert sorted(log.entries()["ended_at"].to_list()) == [NOW - timedelta(days=399), NOW]
    with pytest.raises(ValueError):
        log.purge_older_than(0)


def test_mask_subject_erases_values_and_their_hashes(log):
    log.record(
        entry(
            step="canonical",
            entity="contact",
            changed_fields={"email": 1},
            details={
                "change_samples": {
                    "email": [
                        {"source_id": "003XYZ", "old": pii_hash("ann@example.com"), "new": pii_hash("a@b.co")}
                    ],
                    "title": [{"source_id": "003XYZ", "old": "Müller & Co", "new": "Chair"}],
                }
            },
        ),
        entry(details={"note": "nothing about her"}),
    )
    assert log.mask_subject(["003XYZ", "ann@example.com", "Müller & Co", ""]) == 1
    rows = log.entries(step="canonical")
    stored = rows["details"][0]
    assert (
        "003XYZ" not in stored and pii_hash("ann@example.com") not in stored and "M\\u00fcller" not in stored
    )
    assert stored.count(ERASED) == 4 and pii_hash("a@b.co") in stored
    json.loads(stored)  # still valid JSON
    assert log.mask_subject(["003XYZ"]) == 0


@pytest.fixture
def postgres_warehouse(postgres_db: str) -> Warehouse:
    return Warehouse("postgres", dsn=postgres_db)


def test_the_audit_log_on_postgres(postgres_warehouse):
    log = AuditLog(postgres_warehouse)
    log.record(
        entry(age_days=450, inserted=7),
        entry(
            step="canonical",
            crm=None,
            entity="contact",
            changed_fields={"title": 3},
            details={"source_id": "003XYZ", "email": "ann@example.com"},
        ),
    )
    rows = log.entries()
    assert rows["step"].to_list() == ["canonical", "ingest"] and rows["inserted"].to_list() == [0, 7]
    assert rows["ended_at"][0] == NOW and "ann@example.com" not in rows["details"][0]
    assert log.entries(crm="salesforce").height == 1
    assert log.mask_subject(["003XYZ"]) == 1 and ERASED in log.entries(step="canonical")["details"][0]
    assert log.purge_older_than(400, now=NOW) == 1 and log.entries().height == 1
