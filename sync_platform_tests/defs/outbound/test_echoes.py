"""Echo suppression: what write-back wrote comes back in the next sync and is recognised as ours."""

from __future__ import annotations

from sync_platform.ingest.mass_change import MASS_CHANGE
from sync_platform.ops.alerts import AlertBook
from sync_platform.ops.holds import Holds
from sync_platform.outbound.store import OutboundStore


def test_a_bulk_write_back_is_not_a_mass_change_when_it_comes_back_but_a_crm_edit_on_top_is(harness) -> None:
    """The support system corrects the title of 40 % of HubSpot's contacts. The next sync reads them
    back: no mass_change alert and no hold (that would block our own correction). A CRM-side bulk
    edit of another field in the same sync is still caught."""
    harness.run("hubspot")
    ids = [
        r[0] for r in harness.rows("SELECT id FROM raw_hubspot.contacts WHERE deleted_at IS NULL ORDER BY id")
    ]
    ours = ids[: int(len(ids) * 0.4)]
    store = OutboundStore(harness.warehouse)
    for record_id in ours:
        store.put(
            "contact", {"title": "Support Lead"}, target=f"hubspot:{record_id}", change_id=f"fix-{record_id}"
        )
    harness.run_job("outbound_sync")
    assert harness.admin.get("hubspot", "contacts", ours[0])["jobtitle"] == "Support Lead"

    result, meta = harness.run("hubspot")
    assert result.success
    assert harness.rows("SELECT count(*) FROM raw_hubspot.contacts WHERE jobtitle = 'Support Lead'")[0][
        0
    ] == len(ours)
    assert [a for a in AlertBook(harness.warehouse, sinks=[]).open_alerts() if a.finding == MASS_CHANGE] == []
    assert Holds(harness.warehouse).open() == [], "our own correction is not held"

    # the same records then get a bulk edit in the CRM itself, of the field we wrote: that is news
    harness.admin.update("hubspot", "contacts", ours, {"jobtitle": "Imported"}, mode="automation")
    harness.run("hubspot")
    (alert,) = [a for a in AlertBook(harness.warehouse, sinks=[]).open_alerts() if a.finding == MASS_CHANGE]
    assert alert.details["field"] == "jobtitle"


def test_a_write_the_crm_acknowledged_but_a_workflow_reverted_is_alerted_after_the_next_sync(harness) -> None:
    harness.run("salesforce")
    ids = [r[0] for r in harness.rows("SELECT id FROM raw_salesforce.contacts ORDER BY id LIMIT 3")]
    store = OutboundStore(harness.warehouse)
    for record_id in ids:
        store.put(
            "contact",
            {"title": "Head of Support"},
            target=f"salesforce:{record_id}",
            change_id=f"t-{record_id}",
        )
    _, meta = harness.run_job("outbound_sync")
    assert (
        meta["deliveries"]["salesforce_written"] == 3 and meta["deliveries"]["writes_not_read_back_yet"] == 3
    )
    # a workflow in the CRM puts the old title back on one of them right after our write
    harness.admin.update("salesforce", "Contact", [ids[0]], {"Title": "Reverted"}, mode="automation")
    harness.run("salesforce")
    _, meta = harness.run_job("outbound_sync")
    assert meta["deliveries"]["writes_confirmed"] == 2 and meta["deliveries"]["writes_not_visible"] == 1
    (alert,) = [
        a
        for a in AlertBook(harness.warehouse, sinks=[]).open_alerts()
        if a.finding == "writeback_not_visible"
    ]
    assert (
        alert.crm == "salesforce"
        and alert.details["field"] == "Title"
        and alert.details["example_ids"] == [ids[0]]
    )
