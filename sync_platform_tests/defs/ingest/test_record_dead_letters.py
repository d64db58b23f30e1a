"""Record-level dead letters: one bad record is set aside with its payload, the rest of the run loads."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sync_platform.cli import app
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.dead_letters import DeadLetterQueue
from sync_platform_tests.defs.ingest.test_ingest import write_config

# per CRM: a boolean field only contacts carry, the read path a sync uses, its by-id path, the email key
CRM = {
    "salesforce": ("HasOptedOutOfEmail", "/queryAll", "/queryAll", "Email", "id"),
    "hubspot": ("hs_email_optout", "/contacts/search", "/contacts/batch/read", "email", "id"),
    "dynamics": ("donotemail", "/contacts", "/contacts", "emailaddress1", "contactid"),
}


@pytest.fixture(autouse=True)
def fast_config(tmp_path, monkeypatch):
    write_config(tmp_path / "sync.yaml", monkeypatch)


@pytest.mark.parametrize("crm", list(CRM))
def test_a_corrupt_record_becomes_a_dead_letter_and_replay_fetches_it_by_id(harness, crm, monkeypatch):
    field, sync_path, by_id_path, email_key, pk = CRM[crm]
    monkeypatch.setenv("DAGSTER_HOME", str(harness.data_dir / "dagster_home"))
    harness.admin.inject("corrupt_records", crm=crm, path=sync_path, field=field, count=2)
    result, meta = harness.run(crm)
    assert result.success, "two bad records must not fail the run"
    assert (meta["contacts"]["rows_total"], meta["contacts"]["rows_rejected"]) == (498, 2)
    assert meta["contacts"]["dead_letters_pending"] == 2

    queue = DeadLetterQueue(Warehouse.from_env())
    letters = queue.pending(crm)
    assert [(d.object, d.kind, d.attempts) for d in letters] == [("contacts", "parse", 1)] * 2
    assert all(d.record_id and d.payload_ref and field in d.error for d in letters)
    payload = queue.payload(letters[0].payload_ref)
    assert payload[field] == "#corrupt#" and "***@" in payload[email_key], "stored, with PII masked"
    ids = {d.record_id for d in letters}
    assert not harness.rows(f"SELECT {pk} FROM raw_{crm}.contacts WHERE {pk} IN (?, ?)", tuple(ids))

    runner = CliRunner()
    harness.admin.inject("corrupt_records", crm=crm, path=by_id_path, field=field, count=1)
    partly = runner.invoke(app, ["dlq", "replay"])
    assert partly.exit_code == 1 and "1 landed" in partly.output and "1 still not loadable" in partly.output
    [again] = queue.pending(crm)
    assert again.attempts == 2 and again.id in {d.id for d in letters}

    replayed = runner.invoke(app, ["dlq", "replay"])
    assert replayed.exit_code == 0 and f"{crm} records: replayed" in replayed.output
    assert queue.depth(crm) == 0
    assert harness.rows(f"SELECT count(*) FROM raw_{crm}.contacts WHERE {pk} IN (?, ?)", tuple(ids)) == [(2,)]
    assert harness.rows(f"SELECT count(*) FROM raw_{crm}.contacts") == [(500,)]
