"""Fetch records by id: targeted repair through the ingestion pipeline, cursors untouched."""

from __future__ import annotations

import pytest

from sync_platform.ingest.fetch_by_id import fetch_ids_into_warehouse
from sync_platform_tests.defs.ingest.test_ingest import write_config

# per CRM: sandbox object, primary key column, editable field and its column, an id that never existed
CRM = {
    "salesforce": ("Contact", "id", "Title", "title", lambda some: some[:5] + "9999999999AAA"),
    "hubspot": ("contacts", "id", "jobtitle", "jobtitle", lambda some: "987654321"),
    "dynamics": ("contacts", "contactid", "jobtitle", "jobtitle", lambda some: "fffffff0" + some[8:]),
}


@pytest.fixture(autouse=True)
def fast_config(tmp_path, monkeypatch):
    write_config(tmp_path / "sync.yaml", monkeypatch)


@pytest.mark.parametrize("crm", list(CRM))
def test_by_id_fetch_repairs_frozen_changes_reports_vanished_ids_and_keeps_the_cursor(harness, crm):
    obj, pk, field, column, never_existed = CRM[crm]
    table = f"raw_{crm}.contacts"
    harness.run(crm)
    ids = [r[0] for r in harness.rows(f"SELECT {pk} FROM {table} ORDER BY {pk} LIMIT 260")]
    frozen, deleted, changed = ids[:250], ids[250], ids[251]
    # the incident: content changes, no stamp moves, so a cursor-based read cannot see it
    harness.admin.update(crm, obj, frozen, {field: "repaired"}, mode="frozen")
    harness.admin.delete(crm, obj, [deleted])
    harness.admin.update(crm, obj, [changed], {field: "a user change"})  # the next incremental's job
    vanished = never_existed(ids[0])

    result = fetch_ids_into_warehouse(
        crm, {"contacts": [*frozen, deleted, vanished, "not an id"]}, harness.warehouse, harness.config(crm)
    )

    assert harness.rows(f"SELECT count(*) FROM {table} WHERE {column} = 'repaired'") == [(250,)]
    assert result.requests >= 2, "250 ids take more than one request (chunked)"
    if crm == "dynamics":  # Dataverse returns no deleted rows: the caller marks those
        assert set(result.not_found["contacts"]) == {deleted, vanished, "not an id"}
        assert result.fetched["contacts"] == 250
    else:  # recycle bin / archived: fetched, and lands soft-deleted
        assert set(result.not_found["contacts"]) == {vanished, "not an id"}
        assert result.fetched["contacts"] == 251
        assert harness.rows(f"SELECT deleted_at IS NOT NULL FROM {table} WHERE {pk} = ?", (deleted,)) == [
            (True,)
        ]
    assert harness.rows(f"SELECT count(*) FROM {table}") == [(500,)], "nothing inserted for vanished ids"
    assert harness.rows(f"SELECT count(*) - count(DISTINCT {pk}) FROM {table}") == [(0,)]

    _, after = harness.run(crm)
    meta = after["contacts"]
    assert harness.rows(f"SELECT {column} FROM {table} WHERE {pk} = ?", (changed,)) == [("a user change",)]
    if crm == "dynamics":  # the delta token was kept: exactly the changes since the first run
        assert meta["rows_extracted"] == 252
    else:  # the cursor was kept: the delete, the user change and the look-back's re-reads
        assert 2 <= meta["rows_extracted"] <= 10
    assert harness.rows(f"SELECT count(*) FROM {table} WHERE {column} = 'repaired'") == [(250,)]


def test_unknown_tables_are_refused_before_any_request(harness):
    with pytest.raises(ValueError, match="unknown Salesforce object"):
        fetch_ids_into_warehouse(
            "salesforce",
            {"opportunities": ["006Sb0000000001AAA"]},
            harness.warehouse,
            harness.config("salesforce"),
        )
    assert (
        fetch_ids_into_warehouse(
            "salesforce", {"contacts": []}, harness.warehouse, harness.config("salesforce")
        ).fetched
        == {}
    )


def test_a_fetch_after_a_failed_load_lands_its_records_not_the_failed_package(harness):
    """The by-id fetch behind remediation and `dlq replay` used to load a failed run's leftover
    package instead of what it fetched, and report success."""
    from sync_platform.ingest.pipeline import build_pipeline
    from sync_platform_tests.core.test_pending_packages import leave_pending_package

    harness.run("salesforce")
    [(record_id,)] = harness.rows("SELECT id FROM raw_salesforce.contacts ORDER BY id LIMIT 1")
    harness.admin.update("salesforce", "Contact", [record_id], {"Title": "fetched"}, mode="frozen")
    pipeline = build_pipeline("salesforce", harness.warehouse)
    leave_pending_package(
        pipeline, "contacts", [{"id": "003FAILEDLOAD0001AA", "title": "left by a failed load"}]
    )

    result = fetch_ids_into_warehouse(
        "salesforce", {"contacts": [record_id]}, harness.warehouse, harness.config("salesforce")
    )

    assert result.fetched == {"contacts": 1}
    assert harness.rows("SELECT title FROM raw_salesforce.contacts WHERE id = ?", (record_id,)) == [
        ("fetched",)
    ]
    assert harness.rows("SELECT count(*) FROM raw_salesforce.contacts WHERE id = '003FAILEDLOAD0001AA'") == [
        (0,)
    ]
