"""The change-impact gate end to end: the mapping incidents are held, alerted, approved or restored.

Seeded from the sandbox through the real jobs; the person's side goes through the CLI.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from sync_platform.canonical.history import BuildHistory
from sync_platform.canonical.impact import IMPACT_ALERT
from sync_platform.cli import app
from sync_platform.core.settings import PROJECT_ROOT
from sync_platform.ops.alerts import AlertBook
from sync_platform.security.encryption import decrypt_frame

SENSITIVE = ["email", "first_name", "last_name", "phone"]


@pytest.fixture
def published(harness):
    for crm in ("salesforce", "hubspot", "dynamics"):
        harness.run(crm)
    result, _ = harness.run_job("canonical_build")
    assert result.success
    return harness


def contacts(harness) -> pl.DataFrame:
    """canonical.contacts in clear, in key order (ciphertext differs on every write)."""
    stored = harness.warehouse.read_frame("SELECT * FROM canonical.contacts")
    return decrypt_frame(stored, SENSITIVE).sort("source_system", "source_id")


def edit_mapping(tmp_path: Path, monkeypatch, crm: str, old: str, new: str) -> None:
    """A copy of the mappings with one line of ``crm``'s file changed and its version bumped."""
    edited = tmp_path / "edited_mappings"
    shutil.rmtree(edited, ignore_errors=True)
    shutil.copytree(PROJECT_ROOT / "data" / "mappings", edited)
    path = edited / f"{crm}.yaml"
    text = path.read_text()
    assert old in text and "version: 1\n" in text
    path.write_text(text.replace(old, new, 1).replace("version: 1\n", "version: 2\n", 1))
    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(edited))


def impact_alerts(harness) -> list:
    return [a for a in AlertBook(harness.warehouse, sinks=[]).open_alerts() if a.finding == IMPACT_ALERT]


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_value_map_rewriting_valid_values_stays_in_shadow_until_approved_and_restore_brings_it_back(
    published, tmp_path: Path, monkeypatch
) -> None:
    """Incident 1: HubSpot's ``customer`` now maps to the valid but wrong ``churned`` (version 2)."""
    before = contacts(published)
    edit_mapping(tmp_path, monkeypatch, "hubspot", "customer: customer", "customer: churned")

    checked = CliRunner().invoke(app, ["mapping", "check", "--no-live", "--impact"])
    assert checked.exit_code == 2, "the impact is shown before anything is built"
    assert "hubspot lifecycle_stage" in checked.output and "EXCEEDED" in checked.output
    assert contacts(published).equals(before)

    result, meta = published.run_job("canonical_build", raise_on_error=False)
    assert not result.success
    assert (
        meta["contacts"]["gate"]
        == "blocked: shadow build of hubspot v2 awaits approval (previous table kept)"
    )
    assert "interactions" not in meta and "contacts_shareable" not in meta, "downstream stopped"
    check = published.checks(result)["canonical/contacts:change_impact"]
    assert not check.passed and check.severity.value == "ERROR"
    assert contacts(published).equals(before), "nothing published"
    shadow = decrypt_frame(
        published.warehouse.read_frame("SELECT * FROM canonical_shadow.contacts"), SENSITIVE
    )
    assert shadow.filter(source_system="hubspot", mapping_version=2).height > 0, (
        "built next to the live table"
    )
    report = Path(meta["contacts"]["shadow_report"]).read_text()
    assert "awaits approval" in report and "data:image/png;base64," in report and "lifecycle_stage" in report
    (alert,) = [a for a in impact_alerts(published) if a.details["metric"] == "max_config_changed_share"]
    assert alert.crm == "hubspot" and "hubspot contact.lifecycle_stage" in alert.message
    assert alert.details["field"] == "lifecycle_stage" and alert.details["rows_changed"] > 0
    audit = published.rows(
        "SELECT status, error_class FROM ops.audit_log WHERE run_id = ? AND entity = 'contact'",
        (result.run_id,),
    )
    assert audit == [("blocked", IMPACT_ALERT)]

    assert "approval" in cli("mapping", "approve", "hubspot", "2", "--reason", "customers are churned now")
    approved, meta = published.run_job("canonical_build")
    assert meta["contacts"]["gate"] == "passed: mapping approved (mapping:hubspot:2)"
    churned = contacts(published).filter(source_system="hubspot", lifecycle_stage="churned").height
    assert churned > before.filter(source_system="hubspot", lifecycle_stage="churned").height
    assert impact_alerts(published) == [], "the passing build resolved the alert"
    again, meta = published.run_job("canonical_build")
    assert meta["contacts"]["gate"] == "passed", "version 2 is live now; this build changes nothing"

    kept = BuildHistory(published.warehouse).builds("contact")
    first = kept[-1].build_id  # the build published before the edit
    assert first in cli("canonical", "builds", "contact")
    assert "restored from" in cli("canonical", "restore", "--build", first)
    assert contacts(published).equals(before), "the exact previous values are back"
    restores = published.rows("SELECT details FROM ops.audit_log WHERE step = 'canonical_restore'")
    assert len(restores) == 1 and first in restores[0][0]


def test_a_new_mapping_version_within_the_limits_goes_live_by_itself_and_a_shadow_flag_waits(
    published, tmp_path: Path, monkeypatch
) -> None:
    before = contacts(published)
    edit_mapping(tmp_path, monkeypatch, "dynamics", "jobtitle, normalize: name", "jobtitle, normalize: trim")
    result, meta = published.run_job("canonical_build")
    assert meta["contacts"]["gate"] == "passed: mapping rolled out within the change-impact limits"
    assert (
        meta["contacts"]["rollouts"] == {"dynamics": 2} and Path(meta["contacts"]["shadow_report"]).exists()
    )
    assert contacts(published).filter(source_system="dynamics")["mapping_version"].unique().to_list() == [2]

    flagged = tmp_path / "edited_mappings" / "salesforce.yaml"
    flagged.write_text(flagged.read_text().replace("version: 1\n", "version: 2\nrollout: shadow\n", 1))
    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(flagged.parent))
    result, meta = published.run_job("canonical_build", raise_on_error=False)
    waiting = "blocked: shadow build of salesforce v2 awaits approval (previous table kept)"
    assert meta["accounts"]["gate"] == waiting and "contacts" not in meta, "accounts first; downstream waits"
    assert contacts(published).filter(source_system="salesforce")["mapping_version"].unique().to_list() == [1]

    def approve(version: int) -> dg.ExecuteInProcessResult:  # the job's door, as from the UI's launchpad
        config = {"crm": "salesforce", "version": version, "reason": "reviewed the shadow report"}
        return published.run_job(
            "mapping_approve",
            raise_on_error=False,
            run_config={"ops": {"approve_mapping_version": {"config": config}}},
        )[0]

    wrong = approve(3)
    assert not wrong.success and "salesforce has version 2 in its mapping file, not 3" in str(
        wrong.get_step_failure_events()[0].event_specific_data.error
    )
    assert approve(2).success
    (granted,) = published.rows(
        "SELECT scope, approved_by FROM ops.approvals WHERE scope = 'mapping:salesforce:2'"
    )
    assert granted[1].startswith("dagster run ")
    result, meta = published.run_job("canonical_build")
    approved = "passed: mapping approved (mapping:salesforce:2)"
    assert meta["accounts"]["gate"] == approved and meta["contacts"]["gate"] == approved, (
        "one approval per version"
    )
    result, meta = published.run_job("canonical_build")
    assert meta["contacts"]["gate"] == "passed", "an approved shadow version stays live"
    assert contacts(published).height == before.height


def test_a_field_read_from_the_wrong_column_and_a_vanished_crm_are_held(
    published, tmp_path: Path, monkeypatch
) -> None:
    """Incident 2: Salesforce ``phone`` read from ``title`` (every phone null); then a raw table gone."""
    before = contacts(published)
    edit_mapping(
        tmp_path,
        monkeypatch,
        "salesforce",
        "phone: {source: phone, normalize: phone_e164}",
        "phone: {source: title, normalize: phone_e164}",
    )
    result, meta = published.run_job("canonical_build", raise_on_error=False)
    assert not result.success and meta["contacts"]["gate"].startswith(
        "blocked: shadow build of salesforce v2"
    )
    metrics = {(a.crm, a.details["field"], a.details["metric"]) for a in impact_alerts(published)}
    assert ("salesforce", "phone", "max_null_rate_increase") in metrics
    assert ("salesforce", "phone", "max_config_changed_share") in metrics
    shown = str([a.details for a in impact_alerts(published)])
    assert not any(p in shown for p in before["phone"].drop_nulls().head(50)), "phones only as hashes"
    assert contacts(published).equals(before)

    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(PROJECT_ROOT / "data" / "mappings"))
    published.warehouse.query("DROP TABLE raw_dynamics.contacts")
    result, meta = published.run_job("canonical_build", raise_on_error=False)
    assert not result.success and meta["contacts"]["gate"].startswith("blocked: change impact")
    (vanished,) = impact_alerts(published)  # the phone alerts resolved: that mapping is fixed
    assert vanished.crm == "dynamics" and vanished.details["metric"] == "max_row_loss_share"
    assert vanished.details["rows_after"] == 0 and "every one" in vanished.message
    assert contacts(published).equals(before)
    cli("canonical", "approve", "contact", "--reason", "dynamics is being retired")
    result, meta = published.run_job("canonical_build", raise_on_error=False)
    assert meta["contacts"]["gate"].startswith("passed: change impact approved")
    assert contacts(published).filter(source_system="dynamics").is_empty()
    assert meta["interactions"]["gate"].startswith("blocked: quality"), "its cases now point at no contact"


def test_a_kept_build_is_restored_through_the_dagster_job(published) -> None:
    kept = BuildHistory(published.warehouse).builds("contact")
    before = contacts(published)
    published.warehouse.query("DELETE FROM canonical.contacts WHERE source_system = 'hubspot'")
    config = {"ops": {"restore_canonical_build": {"config": {"build_id": kept[0].build_id}}}}
    result, meta = published.run_job("canonical_restore", run_config=config)
    assert result.success and meta["contacts"]["restored_from"] == kept[0].build_id
    assert contacts(published).equals(before)
    missing = {"ops": {"restore_canonical_build": {"config": {"build_id": "contacts-nope"}}}}
    failed, _ = published.run_job("canonical_restore", raise_on_error=False, run_config=missing)
    assert not failed.success and contacts(published).equals(before)
