"""A record stamped ahead of the CRM's clock lands, raises an alert, and does not stall the cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync_platform.ops.alerts import AlertBook
from sync_platform_tests.defs.ingest.test_ingest import write_config

# per CRM: sandbox object, primary key, cursor column, the column ``touch`` edits, the CRM's sync.yaml
# (Dynamics: the modifiedon read, the one with a cursor; change tracking keeps a token instead)
CRM = {
    "salesforce": ("Contact", "id", "system_modstamp", "title", {}),
    "hubspot": ("contacts", "id", "lastmodifieddate", "jobtitle", {}),
    "dynamics": ("contacts", "contactid", "modifiedon", "jobtitle", {"change_tracking": "off"}),
}


@pytest.mark.parametrize("crm", list(CRM))
def test_a_future_stamped_record_lands_and_alerts_and_later_changes_still_sync(
    harness, crm, tmp_path, monkeypatch
):
    obj, pk, cursor, column, cfg = CRM[crm]
    write_config(tmp_path / "sync.yaml", monkeypatch, **{crm: cfg})
    harness.run(crm)
    crm_now = datetime.fromtimestamp(harness.admin.clock()["now_ms"] // 1000, UTC)  # whole seconds
    future = crm_now + timedelta(days=30)  # an admin script wrote a stamp a month ahead
    [ahead] = harness.admin.touch(
        crm, obj, 1, start=10, value="from the future", stamp=future.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    )["ids"]

    _, meta = harness.run(crm)
    [edited] = harness.admin.touch(crm, obj, 1, start=20, value="an ordinary edit")["ids"]
    harness.run(crm)
    table = f"raw_{crm}.contacts"
    assert harness.rows(f"SELECT {column} FROM {table} WHERE {pk} = ?", (edited,)) == [
        ("an ordinary edit",)
    ], "the edit made after the future stamp was read lands"
    assert harness.rows(f"SELECT {column}, {cursor} FROM {table} WHERE {pk} = ?", (ahead,)) == [
        ("from the future", future)
    ], "the future-stamped record is kept"

    assert meta["contacts"]["future_stamped_rows"] == 1
    clamped = datetime.fromisoformat(meta["contacts"]["cursor_clamped_to"])
    assert crm_now < clamped < crm_now + timedelta(minutes=10), "the cursor stops near the CRM's now"
    [alert] = [
        a for a in AlertBook(harness.warehouse, sinks=[]).open_alerts(crm) if a.finding == "future_cursor"
    ]
    assert alert.key == f"future_cursor:{crm}:contacts:stamps" and alert.asset == f"raw/{crm}/contacts"
    assert ahead in alert.message and future.isoformat() in alert.message
    assert alert.details["records"] == [{"id": ahead, "stamp": future.isoformat()}]


def test_the_crms_clock_decides_what_is_future_not_ours(harness):
    """A CRM whose clock runs ahead of ours stamps its ordinary edits "in our future": not an alert."""
    harness.run("salesforce")
    harness.admin.advance(2 * 86_400)
    [edited] = harness.admin.touch("salesforce", "Contact", 1, start=20, value="on the CRM's clock")["ids"]
    _, meta = harness.run("salesforce")
    assert (meta["contacts"]["future_stamped_rows"], meta["contacts"]["cursor_clamped_to"]) == (0, "none")
    assert not [
        a for a in AlertBook(harness.warehouse, sinks=[]).open_alerts() if a.finding == "future_cursor"
    ]
    assert harness.rows("SELECT title FROM raw_salesforce.contacts WHERE id = ?", (edited,)) == [
        ("on the CRM's clock",)
    ]
