"""The audit trail through real runs: ingest and canonical entries, field-level changes, failed runs."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from sync_platform.core.settings import PROJECT_ROOT
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.audit import AuditLog
from sync_platform.security.encryption import decrypt_frame
from sync_platform.security.redaction import pii_hash


@pytest.fixture(autouse=True)
def fast_config(tmp_path, monkeypatch):
    """Fast backoff and a small retry budget, so a failing CRM fails within a second."""
    crms = {
        crm: {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05, "max_attempts": 2}
        for crm in ("salesforce", "hubspot", "dynamics")
    }
    path = tmp_path / "sync.yaml"
    path.write_text(yaml.safe_dump({"crms": crms}))
    monkeypatch.setenv("SYNC_PLATFORM_CONFIG", str(path))


def _entries(**filters) -> list[dict]:
    return list(AuditLog(Warehouse.from_env()).entries(limit=1000, **filters).iter_rows(named=True))


def test_every_step_is_audited_with_field_level_changes_and_no_pii(harness):
    harness.run("salesforce")
    _, first = harness.run_job("canonical_build")
    ids = [
        r[0]
        for r in harness.rows(
            "SELECT source_id FROM canonical.contacts WHERE source_system = 'salesforce' "
            "AND deleted_at IS NULL AND email IS NOT NULL ORDER BY source_id LIMIT 4"
        )
    ]
    harness.admin.update("salesforce", "Contact", ids[:3], {"Title": "Chief Audit Officer"})
    stored = Warehouse.from_env().read_frame(
        "SELECT email FROM canonical.contacts WHERE source_id = ?", (ids[3],)
    )
    [old_email] = decrypt_frame(stored, ["email"])["email"].to_list()  # email is encrypted at rest
    harness.admin.update("salesforce", "Contact", ids[3:], {"Email": "moved.on@example.net"})
    sync, _ = harness.run("salesforce")
    build, second = harness.run_job("canonical_build")

    ingest = {r["entity"]: r for r in _entries(step="ingest", crm="salesforce") if r["run_id"] == sync.run_id}
    assert set(ingest) == {"contacts", "accounts", "cases"}
    contacts = ingest["contacts"]
    assert (contacts["inserted"], contacts["updated"], contacts["deleted"], contacts["status"]) == (
        0,
        4,
        0,
        "success",
    )
    assert contacts["records_read"] >= 4 and json.loads(contacts["details"])["rows_total"] == 500
    assert ingest["accounts"]["updated"] == 0

    canonical = {r["entity"]: r for r in _entries(step="canonical") if r["run_id"] == build.run_id}
    assert set(canonical) == {"account", "contact", "interaction"}
    entry = canonical["contact"]
    assert entry["status"] == "success" and entry["crm"] is None
    assert entry["records_read"] == second["contacts"]["rows_in"]
    assert entry["rejected"] == second["contacts"]["rows_rejected"]
    assert (entry["inserted"], entry["updated"], entry["deleted"]) == (0, 4, 0)
    changed = json.loads(entry["changed_fields"])
    assert changed["title"] == 3 and changed["email"] == 1 and changed["updated_at"] == 4
    samples = json.loads(entry["details"])["change_samples"]
    assert [s["new"] for s in samples["title"]] == ["Chief Audit Officer"] * 3
    assert samples["email"] == [
        {
            "source_system": "salesforce",
            "source_id": ids[3],
            "old": pii_hash(old_email),
            "new": pii_hash("moved.on@example.net"),
        }
    ]
    first_build = [r for r in _entries(step="canonical", entity="contact") if r["run_id"] != build.run_id]
    assert first_build[0]["inserted"] == first["contacts"]["rows_good"] and first_build[0]["updated"] == 0

    stored = " ".join(
        f"{r[0]} {r[1]}" for r in harness.rows("SELECT details, changed_fields FROM ops.audit_log")
    )
    emails = {r[0] for r in harness.rows("SELECT email FROM raw_salesforce.contacts WHERE email IS NOT NULL")}
    assert "moved.on@example.net" in emails and old_email not in emails | {None}
    assert [e for e in emails | {old_email} if e.strip() in stored] == []


def test_a_failed_load_is_audited_per_object_with_its_error_class(harness):
    harness.admin.inject("error", crm="salesforce", path="/services/data", status=500, count=50)
    result, _ = harness.run("salesforce", raise_on_error=False)
    assert not result.success
    entries = _entries(step="ingest", crm="salesforce")
    assert {r["entity"] for r in entries} == {"contacts", "accounts", "cases"}
    assert {(r["status"], r["error_class"], r["run_id"]) for r in entries} == {
        ("failed", "server_error", result.run_id)
    }
    details = json.loads(entries[0]["details"])
    assert details["attempts"] == 2 and details["http_status"] == 500


def test_a_blocked_build_is_audited_and_changes_nothing(harness, tmp_path, monkeypatch):
    """The incident's mapping (email and last name swapped): the gate blocks, the audit says so."""
    broken = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "data" / "mappings", broken)
    path = broken / "salesforce.yaml"
    path.write_text(
        path.read_text().replace(
            "email: {source: email, normalize: email}", "email: {source: last_name, normalize: email}"
        )
    )
    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(broken))
    harness.run("salesforce")
    result, meta = harness.run_job("canonical_build", raise_on_error=False)
    assert not result.success
    [entry] = [r for r in _entries(step="canonical", entity="contact") if r["run_id"] == result.run_id]
    assert (entry["status"], entry["error_class"]) == ("blocked", "canonical_blast_radius_exceeded")
    assert entry["rejected"] == meta["contacts"]["rows_rejected"] > 0.25 * entry["records_read"]
    assert (entry["inserted"], entry["updated"], entry["deleted"], entry["changed_fields"]) == (0, 0, 0, "{}")
    assert json.loads(entry["details"])["rule_counts"]["email_format"] > 0
