"""Record-level dead letters: one bad record is set aside with its payload, the rest of the run loads."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sync_platform.cli import app
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.fetch_by_id import fetch_ids_into_warehouse
from sync_platform.ingest.pipeline import build_pipeline
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


class DeadLetterWriteRefused(RuntimeError):
    """The warehouse refusing the dead-letter write (a full disk, a dropped connection)."""


def _refuse(*args, **kwargs):
    raise DeadLetterWriteRefused("the warehouse refused the dead letter")


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _saved_cursor(harness, crm: str = "salesforce"):
    """The contacts cursor dlt keeps in the warehouse (where the next run starts, less the look-back)."""
    pipeline = build_pipeline(crm, harness.warehouse)
    pipeline.sync_destination()
    return pipeline.state["sources"][crm]["resources"]["contacts"]["incremental"]["SystemModstamp"][
        "last_value"
    ]


def test_a_failed_dead_letter_write_fails_the_run_before_the_cursor_moves_past_the_record(
    harness, monkeypatch
):
    field, sync_path, *_ = CRM["salesforce"]
    harness.run("salesforce")
    cursor = _saved_cursor(harness)
    [edited] = harness.admin.touch("salesforce", "Contact", 1, start=30, value="edited after the first run")[
        "ids"
    ]
    harness.admin.inject("corrupt_records", crm="salesforce", path=sync_path, field=field, count=1)
    with monkeypatch.context() as refusing:
        refusing.setattr(DeadLetterQueue, "add_records", _refuse)
        failed, _ = harness.run("salesforce", raise_on_error=False)
    assert not failed.success
    assert _saved_cursor(harness) == cursor, "the cursor must not pass a record whose dead letter was lost"
    assert harness.rows("SELECT title FROM raw_salesforce.contacts WHERE id = ?", (edited,)) != [
        ("edited after the first run",)
    ], "nothing of the failed run loaded"

    harness.admin.inject("corrupt_records", crm="salesforce", path=sync_path, field=field, count=1)
    result, meta = harness.run("salesforce")
    assert result.success and meta["contacts"]["rows_rejected"] == 1
    [letter] = DeadLetterQueue(harness.warehouse).pending("salesforce")
    assert (letter.object, letter.kind, letter.attempts) == ("contacts", "parse", 1) and letter.record_id
    assert harness.rows("SELECT title FROM raw_salesforce.contacts WHERE id = ?", (edited,)) == [
        ("edited after the first run",)
    ]
    assert _saved_cursor(harness) > cursor


def test_a_by_id_fetch_whose_dead_letter_write_fails_loads_nothing_and_a_retry_records_it(
    harness, monkeypatch
):
    field, _, by_id_path, *_ = CRM["salesforce"]
    harness.run("salesforce")
    ids = [r[0] for r in harness.rows("SELECT id FROM raw_salesforce.contacts ORDER BY id LIMIT 3")]
    harness.admin.update("salesforce", "Contact", ids, {"Title": "repaired"}, mode="frozen")
    harness.admin.inject("corrupt_records", crm="salesforce", path=by_id_path, field=field, count=1)
    with monkeypatch.context() as refusing:
        refusing.setattr(DeadLetterQueue, "add_records", _refuse)
        with pytest.raises(Exception) as failed:
            fetch_ids_into_warehouse(
                "salesforce", {"contacts": ids}, harness.warehouse, harness.config("salesforce")
            )
    assert _caused_by(failed.value, DeadLetterWriteRefused)
    repaired = "SELECT count(*) FROM raw_salesforce.contacts WHERE title = 'repaired'"
    assert harness.rows(repaired) == [(0,)], "no load without its dead letters"

    harness.admin.inject("corrupt_records", crm="salesforce", path=by_id_path, field=field, count=1)
    result = fetch_ids_into_warehouse(
        "salesforce", {"contacts": ids}, harness.warehouse, harness.config("salesforce")
    )
    [letter] = DeadLetterQueue(harness.warehouse).pending("salesforce")
    assert result.rejected["contacts"] == [letter.record_id]
    assert harness.rows(repaired) == [(2,)]
