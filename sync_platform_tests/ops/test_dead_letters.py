"""Record-level dead letters: redacted payloads, one entry per pending record, validation rejects."""

from __future__ import annotations

from sync_platform.core.errors import RejectedRecord
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.dead_letters import DeadLetterQueue, redact_payload


def test_payloads_are_redacted_of_emails_phones_and_names_but_keep_the_rest():
    record = {
        "Email": "john.smith@example.com",
        "HasOptedOutOfEmail": "#corrupt#",
        "telephone1": "(415) 555-0199",
        "FirstName": "John",
        "Title": "CTO",
        "Description": "call john@corp.example.com",
        "Count": 3,
        "properties": {"lastname": "Smith", "donotemail": True},
    }
    out = redact_payload(record)
    assert out["Email"] == "j***@e***.com" and out["telephone1"] == "***99" and out["FirstName"] == "J***"
    assert out["properties"] == {"lastname": "S***", "donotemail": True}
    assert out["Description"] == "call j***@c***.com"
    assert (out["HasOptedOutOfEmail"], out["Title"], out["Count"]) == ("#corrupt#", "CTO", 3)


def test_a_record_rejected_again_bumps_attempts_and_one_without_an_id_gets_its_own_entry(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SYNC_PLATFORM_WAREHOUSE", raising=False)
    queue = DeadLetterQueue(Warehouse.from_env())
    bad = RejectedRecord(
        "003A", "parse", "CreatedDate: not a valid datetime", {"Id": "003A", "Email": "a@b.example"}
    )
    first = queue.add_records("salesforce", "contacts", [bad], run_id="r1")
    again = queue.add_records("salesforce", "contacts", [bad], run_id="r2")
    anonymous = queue.add_records(
        "salesforce", "contacts", [RejectedRecord(None, "validation", "Id: missing", {})], run_id="r2"
    )
    assert first == again and anonymous != first
    letters = {d.id: d for d in queue.pending("salesforce")}
    assert (letters[first[0]].attempts, letters[first[0]].run_id) == (2, "r2")
    assert letters[anonymous[0]].kind == "validation" and letters[anonymous[0]].record_id.startswith(
        "unidentified:"
    )
    assert queue.payload(letters[first[0]].payload_ref) == {"Id": "003A", "Email": "a***@b***.example"}
