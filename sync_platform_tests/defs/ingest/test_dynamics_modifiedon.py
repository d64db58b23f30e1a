"""Dynamics tables without change tracking: detected once, read by modifiedon, deletions flagged unseen."""

from __future__ import annotations

import pytest

from sync_platform_tests.defs.ingest.test_ingest import write_config


@pytest.fixture(autouse=True)
def fast_config(tmp_path, monkeypatch):
    write_config(tmp_path / "sync.yaml", monkeypatch)


def test_an_untracked_table_falls_back_to_modifiedon_once_and_reads_incrementally(harness):
    harness.admin.set_change_tracking("contacts", False)
    _, first = harness.run("dynamics")
    assert (first["contacts"]["rows_total"], first["contacts"]["read_mode"]) == (500, "modifiedon")
    assert first["contacts"]["deletes_visible"] is False
    assert (first["accounts"]["read_mode"], first["accounts"]["deletes_visible"]) == ("change_tracking", True)

    edited = harness.admin.touch("dynamics", "contacts", 3, start=10, value="edited-late")["ids"]
    gone = harness.admin.touch("dynamics", "contacts", 1, start=200)["ids"]
    harness.admin.delete("dynamics", "contacts", gone)
    _, second = harness.run("dynamics")
    meta = second["contacts"]
    assert (meta["rows_updated"], meta["rows_inserted"]) == (3, 0)
    assert meta["rows_extracted"] < 50, "from the saved cursor minus the look-back, not from scratch"
    assert sorted(
        r[0]
        for r in harness.rows("SELECT contactid FROM raw_dynamics.contacts WHERE jobtitle = 'edited-late'")
    ) == sorted(edited)
    assert harness.rows("SELECT count(*) FROM raw_dynamics.contacts WHERE deleted_at IS NOT NULL") == [
        (0,)
    ], "without tracking a deletion is invisible (reconciliation's job)"
    assert harness.admin.requests(crm="dynamics", status=400) == 1, "the refusal is met once, then remembered"


def test_change_tracking_on_fails_loudly_on_an_untracked_table(harness, tmp_path, monkeypatch):
    write_config(tmp_path / "sync.yaml", monkeypatch, dynamics={"change_tracking": "on"})
    harness.admin.set_change_tracking("incidents", False)
    result, _ = harness.run("dynamics", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "isn't enabled for change tracking" in failure.step_failure_data.error.message


def test_change_tracking_off_reads_modifiedon_even_where_tracking_works(harness, tmp_path, monkeypatch):
    write_config(tmp_path / "sync.yaml", monkeypatch, dynamics={"change_tracking": "off"})
    _, meta = harness.run("dynamics")
    assert {meta[t]["read_mode"] for t in ("contacts", "accounts", "incidents")} == {"modifiedon"}
    assert meta["contacts"]["rows_total"] == 500
