"""A bad import in the CRM itself: loaded faithfully, alerted, held from canonical data until released."""

from __future__ import annotations

from typer.testing import CliRunner

from sync_platform.cli import app
from sync_platform.ingest.mass_change import MASS_CHANGE
from sync_platform.ops.alerts import AlertBook
from sync_platform.ops.holds import Holds


def test_a_crm_side_mass_change_lands_raw_but_is_held_from_canonical_until_released(harness) -> None:
    for crm in ("salesforce", "hubspot", "dynamics"):
        harness.run(crm)
    built, _ = harness.run_job("canonical_build")
    assert built.success
    stages_before = harness.rows(
        "SELECT lifecycle_stage, count(*) FROM canonical.contacts WHERE source_system = 'hubspot' "
        "GROUP BY 1 ORDER BY 1"
    )
    ids = [r[0] for r in harness.rows("SELECT id FROM raw_hubspot.contacts ORDER BY id LIMIT 200")]
    harness.admin.update("hubspot", "contacts", ids, {"lifecyclestage": "other"}, mode="automation")

    result, meta = harness.run("hubspot")
    assert result.success, "the sync mirrors what the CRM holds"
    assert (
        harness.rows("SELECT count(*) FROM raw_hubspot.contacts WHERE lifecyclestage = 'other'")[0][0] >= 200
    )
    (alert,) = [a for a in AlertBook(harness.warehouse, sinks=[]).open_alerts() if a.finding == MASS_CHANGE]
    assert alert.crm == "hubspot" and "hubspot contacts.lifecyclestage" in alert.message
    assert alert.details["field"] == "lifecyclestage" and 150 <= alert.details["changed"] <= 200
    assert set(alert.details["example_ids"]) <= set(ids)
    (hold,) = Holds(harness.warehouse).open()
    assert hold.entity == "contact" and alert.details["hold_id"] == hold.id
    listed = CliRunner().invoke(app, ["hold", "list"])
    assert listed.exit_code == 0 and hold.id in listed.output and "lifecyclestage" in listed.output

    held, meta = harness.run_job("canonical_build", raise_on_error=False)
    assert not held.success and meta["contacts"]["gate"].startswith(f"blocked: held by {hold.id}")
    assert "interactions" not in meta, "downstream stopped"
    after = harness.rows(
        "SELECT lifecycle_stage, count(*) FROM canonical.contacts WHERE source_system = 'hubspot' "
        "GROUP BY 1 ORDER BY 1"
    )
    assert after == stages_before, "the corruption did not spread"
    assert meta["accounts"]["gate"] == "passed", "only the entity the object feeds is held"

    refused = CliRunner().invoke(app, ["hold", "release", "nope", "--reason", "x"])
    assert refused.exit_code == 1 and "no open hold" in refused.output
    released = CliRunner().invoke(app, ["hold", "release", hold.id, "--reason", "the import was right"])
    assert released.exit_code == 0, released.output
    published, meta = harness.run_job("canonical_build")
    assert published.success and "interactions" in meta
    assert (
        harness.rows(
            "SELECT count(*) FROM canonical.contacts WHERE source_system = 'hubspot' "
            "AND lifecycle_stage = 'other'"
        )[0][0]
        >= 200
    )
    assert not [a for a in AlertBook(harness.warehouse, sinks=[]).open_alerts() if a.finding == MASS_CHANGE]
    audit = harness.rows("SELECT details FROM ops.audit_log WHERE step = 'hold_release'")
    assert len(audit) == 1 and "the import was right" in audit[0][0]
