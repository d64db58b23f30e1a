"""PII end to end: encrypted canonical columns, consent exclusion, erasure, and the live mapping check."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from sync_platform.canonical.model import E164_PATTERN
from sync_platform.cli import app
from sync_platform.core.settings import PROJECT_ROOT
from sync_platform.core.warehouse import Warehouse
from sync_platform.security.encryption import KEYS_ENV, decrypt_frame, generate_key, is_encrypted

runner = CliRunner()


def _contacts(decrypt: bool = False) -> pl.DataFrame:
    frame = Warehouse.from_env().read_frame("SELECT * FROM canonical.contacts")
    return decrypt_frame(frame, ["email", "first_name", "last_name", "phone"]) if decrypt else frame


@pytest.fixture
def built(harness):
    harness.run("salesforce")
    harness.run_job("canonical_build")
    return harness


def test_sensitive_columns_are_ciphertext_at_rest_and_decrypt_for_authorized_use(built, monkeypatch):
    stored = _contacts()
    raw_phones = {
        p for (p,) in built.rows("SELECT phone FROM raw_salesforce.contacts WHERE phone IS NOT NULL")
    }
    phones = stored["phone"].drop_nulls().to_list()
    assert phones and all(is_encrypted(p) for p in phones)
    assert all(is_encrypted(e) for e in stored["email"].drop_nulls().to_list())
    text = stored.write_csv()
    assert not any(re.sub(r"\D", "", p)[-10:] in text for p in raw_phones), "no phone in clear at rest"
    assert stored["lifecycle_stage"].null_count() == 0 and not is_encrypted(stored["lifecycle_stage"][0])

    clear = _contacts(decrypt=True)
    assert all(re.match(E164_PATTERN, p) for p in clear["phone"].drop_nulls().to_list())
    some_id, raw_phone = built.rows(
        "SELECT id, phone FROM raw_salesforce.contacts WHERE phone LIKE '(%' LIMIT 1"
    )[0]
    digits = re.sub(r"\D", "", raw_phone)
    assert clear.filter(pl.col("source_id") == some_id)["phone"].item() == f"+1{digits[-10:]}"

    shown = runner.invoke(app, ["canonical", "show", "--entity", "contact", "--decrypt", "--limit", "3"])
    assert shown.exit_code == 0 and "+1" in shown.output and "enc1:" not in shown.output
    hidden = runner.invoke(app, ["canonical", "show", "--entity", "contact", "--limit", "3"])
    assert hidden.exit_code == 0 and "enc1:" in hidden.output

    monkeypatch.setenv(KEYS_ENV, generate_key())  # someone else's key
    wrong = runner.invoke(app, ["canonical", "show", "--decrypt"])
    assert wrong.exit_code == 1 and "not among the configured keys" in wrong.output
    monkeypatch.delenv(KEYS_ENV)
    (built.data_dir / "secrets" / "field_keys").rename(built.data_dir / "elsewhere")
    missing = runner.invoke(app, ["canonical", "show", "--decrypt"])
    assert missing.exit_code == 1 and "no field-encryption key" in missing.output


def test_key_rotation_re_encrypts_the_tables_and_the_old_key_can_then_go(built, monkeypatch):
    old = (built.data_dir / "secrets" / "field_keys").read_text().strip()
    before = _contacts(decrypt=True)
    new = generate_key()
    monkeypatch.setenv(KEYS_ENV, f"{new},{old}")
    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0 and "canonical.contacts:" in rotated.output
    monkeypatch.setenv(KEYS_ENV, new)  # old key dropped
    after = _contacts(decrypt=True).sort("source_id")
    changed = [
        c
        for c in before.columns
        if not c.startswith("_dlt") and not after[c].equals(before.sort("source_id")[c])
    ]
    assert changed == [], "every value decrypts as before"
    again = runner.invoke(app, ["keys", "rotate"])
    assert again.exit_code == 0 and "canonical.contacts: 0 value(s)" in again.output
    kept = built.warehouse.read_frame("SELECT * FROM canonical_history.contacts")
    assert kept.height and decrypt_frame(kept, ["email"])["email"].drop_nulls().len(), (
        "kept builds were re-encrypted too: the new key alone opens them"
    )


def test_opted_out_people_are_not_shareable_in_any_crm(harness):
    for crm in ("salesforce", "hubspot"):
        harness.run(crm)
    harness.run_job("canonical_build")
    contacts = _contacts()
    cross = (
        contacts.filter(~pl.col("email_opt_out") & pl.col("deleted_at").is_null())
        .group_by("customer_id")
        .agg(
            pl.col("source_system").n_unique().alias("crms"),
            pl.col("source_id").filter(pl.col("source_system") == "salesforce").first().alias("sf_id"),
        )
        .filter((pl.col("crms") == 2) & pl.col("sf_id").is_not_null())
        .sort("customer_id")
    )
    person, sf_id = cross.row(0)[0], cross.row(0)[2]
    harness.admin.update("salesforce", "Contact", [sf_id], {"HasOptedOutOfEmail": True})
    harness.run("salesforce")
    _, meta = harness.run_job("canonical_build")
    shareable = Warehouse.from_env().read_frame("SELECT * FROM canonical.contacts_shareable")
    contacts = _contacts()
    assert contacts.filter(pl.col("customer_id") == person).height == 2, "still in the canonical model"
    assert shareable.filter(pl.col("customer_id") == person).is_empty(), (
        "the opt-out in Salesforce covers HubSpot"
    )
    opted_out = set(contacts.filter(pl.col("email_opt_out"))["customer_id"].to_list())
    assert opted_out and not opted_out & set(shareable["customer_id"].to_list())
    assert shareable["deleted_at"].null_count() == shareable.height
    assert meta["contacts_shareable"]["shareable"] == shareable.height < contacts.height
    assert all(is_encrypted(p) for p in shareable["phone"].drop_nulls().to_list()), (
        "still encrypted when shared"
    )


def _seed_operational_rows(email: str, phone: str, source_id: str) -> None:
    """An audit entry, a quarantine entry and a dead letter that mention the person."""
    warehouse = Warehouse.from_env()
    with warehouse.connect() as conn:
        cur = conn.cursor()
        # written raw, past AuditLog's redaction: erasure must find the person however they got in
        insert = (
            "INSERT INTO ops.audit_log (id, step, entity, started_at, ended_at, records_read, inserted, "
            "updated, deleted, rejected, changed_fields, status, details) "
            "VALUES (?, ?, 'contact', now(), now(), 0, 0, 0, 0, 0, '{}', 'success', ?)"
        )
        cur.execute(
            insert, ("a1", "canonical", json.dumps({"examples": [email, phone, source_id], "count": 12345}))
        )
        cur.execute(insert, ("a2", "ingest", json.dumps({"rows": 3})))
        cur.execute(
            'INSERT INTO ops.quarantine (entity, source_system, source_id, rule, "column", value_masked) '
            "VALUES ('interaction', 'salesforce', '500Sb0000000001AAA', 'contact_source_id_exists', "
            "'contact_source_id', ?)",
            (source_id,),
        )
    from sync_platform.ops.dead_letters import DeadLetterQueue

    DeadLetterQueue(warehouse).ensure()
    warehouse.query(
        "INSERT INTO ops.dead_letters (id, crm, object, kind, attempts, error, created_at) "
        "VALUES ('d1', 'salesforce', 'contacts', 'validation', 1, ?, now())",
        (f"record {source_id} rejected: {email}",),
    )


def test_erasure_removes_the_person_masks_them_and_survives_rebuilds(built):
    clear = _contacts(decrypt=True)
    person = (
        clear.filter(pl.col("email").is_not_null() & pl.col("phone").is_not_null())
        .sort("source_id")
        .row(0, named=True)
    )
    email, phone, sf_id = person["email"], person["phone"], person["source_id"]
    linked_cases = built.rows(
        "SELECT count(*) FROM canonical.interactions WHERE contact_source_id = ?", (sf_id,)
    )[0][0]
    _seed_operational_rows(email, phone, sf_id)

    erased = runner.invoke(app, ["erase", "--email", f"  {email.upper()} "])
    assert erased.exit_code == 0, erased.output
    records = clear.filter(pl.col("email") == email).height
    assert f"{records} canonical contact record(s) removed" in erased.output, erased.output
    assert email not in erased.output
    assert _contacts(decrypt=True).filter(pl.col("email") == email).is_empty()
    assert (
        built.rows("SELECT count(*) FROM canonical.contacts_shareable WHERE source_id = ?", (sf_id,))[0][0]
        == 0
    )
    assert (
        built.rows("SELECT count(*) FROM canonical.interactions WHERE contact_source_id = ?", (sf_id,))[0][0]
        == 0
    )
    assert (
        built.rows("SELECT count(*) FROM canonical.interactions WHERE contact_source_id IS NULL")[0][0]
        >= linked_cases
    )
    for table, column in (("contacts", "source_id"), ("interactions", "contact_source_id")):
        kept = built.rows(f"SELECT count(*) FROM canonical_history.{table} WHERE {column} = ?", (sf_id,))
        assert kept == [(0,)], (
            f"the kept builds of {table} forgot the person too: a restore cannot bring them back"
        )
    versions = built.rows("SELECT count(*) FROM raw_history.salesforce_contacts WHERE id = ?", (sf_id,))
    assert versions == [(0,)], "the prior raw versions are forgotten (the raw row mirrors the CRM)"

    details = [
        d for (d,) in built.rows("SELECT details FROM ops.audit_log WHERE id IN ('a1', 'a2') ORDER BY id")
    ]
    assert email not in details[0] and phone not in details[0] and sf_id not in details[0]
    assert json.loads(details[0])["count"] == 12345 and json.loads(details[1]) == {"rows": 3}, (
        "JSON stays valid"
    )
    assert built.rows(
        "SELECT value_masked FROM ops.quarantine WHERE rule = 'contact_source_id_exists' "
        "AND source_id = '500Sb0000000001AAA'"
    ) == [("[erased]",)]
    assert email not in built.rows("SELECT error FROM ops.dead_letters WHERE id = 'd1'")[0][0]
    stored = built.rows("SELECT * FROM ops.erasure_requests") + built.rows(
        "SELECT * FROM ops.erasure_subjects"
    )
    assert stored and not any(email in str(v) or email.upper() in str(v) for row in stored for v in row)

    # the CRM still has the person (erasing there is its owner's job) and a re-import brings a copy
    built.admin.create("salesforce", "Contact", [{"LastName": "Again", "Email": email.upper()}])
    built.run("salesforce")
    result, _ = built.run_job("canonical_build")
    assert result.success
    assert _contacts(decrypt=True).filter(pl.col("email") == email).is_empty(), "still gone after a rebuild"
    assert (
        built.rows(
            "SELECT count(*) FROM ops.quarantine WHERE entity = 'contact' AND source_id = ?", (sf_id,)
        )[0][0]
        == 0
    )
    assert (
        built.rows("SELECT count(*) FROM ops.erasure_subjects WHERE source_id IS NOT NULL")[0][0]
        == records + 1
    ), "the re-created record joined the suppression list"


def test_erasure_by_record_id(built):
    from sync_platform.core.errors import RejectedRecord
    from sync_platform.ops.dead_letters import DeadLetterQueue

    sf_id = _contacts().sort("source_id")["source_id"][1]
    # a record-level dead letter of the person: its payload keeps what masking does not touch
    payload = {"Id": sf_id, "Title": "Head of Widgets", "AccountId": "001Sb0000000007AAA", "Email": "x@y.z"}
    queue = DeadLetterQueue(Warehouse.from_env())
    queue.add_records(
        "salesforce", "contacts", [RejectedRecord(sf_id, "parse", "Title: not text", payload)], "r1"
    )
    erased = runner.invoke(app, ["erase", "--source", "salesforce", "--id", sf_id])
    assert erased.exit_code == 0 and "1 canonical contact record(s) removed" in erased.output
    assert built.rows("SELECT count(*) FROM ops.dead_letter_payloads WHERE record_id = ?", (sf_id,)) == [(0,)]
    assert built.rows("SELECT count(*) FROM ops.dead_letter_payloads WHERE payload LIKE '%Widgets%'") == [
        (0,)
    ]
    assert built.rows("SELECT count(*) FROM ops.dead_letters WHERE record_id = ?", (sf_id,)) == [(0,)]
    masked = built.rows("SELECT record_id FROM ops.dead_letters WHERE error LIKE '%Title: not text%'")
    assert masked == [("[erased]",)]
    built.run_job("canonical_build")
    assert built.rows("SELECT count(*) FROM canonical.contacts WHERE source_id = ?", (sf_id,))[0][0] == 0
    bad = runner.invoke(app, ["erase", "--source", "salesforce"])
    assert bad.exit_code != 0


def test_live_mapping_check_passes_against_the_sandbox_and_names_a_missing_field(
    harness, tmp_path: Path, monkeypatch
):
    ok = runner.invoke(app, ["mapping", "check", "--live"])
    assert ok.exit_code == 0, ok.output
    assert "live: salesforce: 29 of 29 source fields exist and are readable" in ok.output
    assert "live: dynamics:" in ok.output and "live: hubspot:" in ok.output

    # an org without the custom field the Salesforce mapping reads for a new canonical value
    from sync_platform.ingest import raw_schema

    contacts = raw_schema.RAW_TABLES["salesforce"]["contacts"]
    patched = dataclasses.replace(contacts, fields={**contacts.fields, "Job_Level__c": "string"})
    monkeypatch.setitem(raw_schema.RAW_TABLES["salesforce"], "contacts", patched)
    broken = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "data" / "mappings", broken)
    path = broken / "salesforce.yaml"
    path.write_text(
        path.read_text().replace(
            "title: {source: title, normalize: name}", "title: {source: job_level__c, normalize: name}"
        )
    )
    bad = runner.invoke(app, ["mapping", "check", "--live", "--directory", str(broken)])
    assert bad.exit_code == 1
    assert (
        "salesforce.yaml: entities.contact.fields.title.source: "
        "Salesforce Contact has no field 'Job_Level__c'" in bad.output
    )
    assert "live: hubspot: 24 of 24" in bad.output


def test_live_mapping_check_without_any_crm_configured(monkeypatch):
    monkeypatch.delenv("SYNC_PLATFORM_SANDBOX_URL", raising=False)
    quiet = runner.invoke(app, ["mapping", "check"])
    assert quiet.exit_code == 0 and "live:" not in quiet.output
    required = runner.invoke(app, ["mapping", "check", "--live"])
    assert required.exit_code == 1 and "skipped: not configured" in required.output
