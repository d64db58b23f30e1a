"""The canonical layer end to end: raw tables from the sandbox → mapping → pandera gate → canonical."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sync_platform.core.settings import PROJECT_ROOT


@pytest.fixture
def synced(harness):
    for crm in ("salesforce", "hubspot", "dynamics"):
        harness.run(crm)
    return harness


def _contacts_fingerprint(harness) -> list[tuple]:
    """Per CRM: rows, emails, first and last email (decrypted: ciphertext changes on every write)."""
    import polars as pl

    from sync_platform.core.warehouse import Warehouse
    from sync_platform.security.encryption import decrypt_frame

    contacts = decrypt_frame(Warehouse.from_env().read_frame("SELECT * FROM canonical.contacts"), ["email"])
    return (
        contacts.group_by("source_system")
        .agg(
            pl.len(),
            pl.col("email").count().alias("emails"),
            pl.col("email").min().alias("min"),
            pl.col("email").max().alias("max"),
        )
        .sort("source_system")
        .rows()
    )


def test_the_canonical_model_builds_from_all_three_crms(synced):
    result, meta = synced.run_job("canonical_build")
    assert result.success
    contacts = meta["contacts"]
    assert contacts["gate"] == "passed" and contacts["rows_in"] == 1_500
    assert 0 < contacts["rows_rejected"] <= 0.01 * 1_500, "the seeded invalid emails are quarantined"
    assert contacts["rule_counts"].get("email_format", 0) >= 1
    assert contacts["mapping_versions"] == {"dynamics": 1, "hubspot": 1, "salesforce": 1}
    rows = synced.rows(
        "SELECT count(*), count(DISTINCT customer_id), count(DISTINCT source_system) FROM canonical.contacts"
    )[0]
    assert rows[0] == contacts["rows_good"] and rows[1] < rows[0] and rows[2] == 3, "golden ids link CRMs"
    quarantined = synced.rows("SELECT rule, value_masked FROM ops.quarantine WHERE entity = 'contact'")
    assert quarantined and all("@" not in v or "***" in v for _, v in quarantined), "PII masked in quarantine"
    duplicates = meta["duplicates"]
    assert duplicates["cross_crm_groups"] > 0 and duplicates["within_crm_groups"] > 0
    stored = synced.rows(
        "SELECT count(*), sum(CASE WHEN cross_crm THEN 1 ELSE 0 END) FROM canonical.duplicate_groups "
        "WHERE entity = 'contacts'"
    )[0]
    assert stored[0] > 0 and stored[1] == duplicates["by_scope"]["contacts"]["cross:any"]
    evaluations = {
        e.asset_key.path[-1]: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "quality_gate"
    }
    assert evaluations["contacts"].severity.value == "WARN" and not evaluations["contacts"].passed


def test_the_incident_a_field_swap_is_stopped_before_it_corrupts_anything(
    synced, tmp_path: Path, monkeypatch
):
    """An import update swaps two fields for one CRM (~a third of all contacts): the gate must hold."""
    synced.run_job("canonical_build")
    before = _contacts_fingerprint(synced)

    broken = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "data" / "mappings", broken)
    path = broken / "salesforce.yaml"
    text = path.read_text()
    text = text.replace(
        "email: {source: email, normalize: email}", "email: {source: last_name, normalize: email}"
    )
    text = text.replace(
        "last_name: {source: last_name, normalize: name}", "last_name: {source: email, normalize: name}"
    )
    path.write_text(text)
    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(broken))

    result, meta = synced.run_job("canonical_build", raise_on_error=False)
    assert not result.success
    assert meta["contacts"]["gate"].startswith("blocked") and meta["contacts"]["rejected_share"] > 0.25
    assert "interactions" not in meta, "downstream did not materialize"
    assert _contacts_fingerprint(synced) == before, "the previous good table is intact"
    alerts = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert any(
        e.asset_observation_data.asset_observation.metadata["alert"].value
        == "canonical_blast_radius_exceeded"
        for e in alerts
    )
    run_cases = synced.rows(
        "SELECT count(DISTINCT source_id) FROM ops.quarantine WHERE run_id = ? AND entity = 'contact'",
        (result.run_id,),
    )[0][0]
    assert run_cases >= 0.25 * 1_500, "the rejected rows are kept, not dropped"

    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(PROJECT_ROOT / "data" / "mappings"))
    fixed, meta = synced.run_job("canonical_build")
    assert fixed.success and meta["contacts"]["gate"] == "passed" and "interactions" in meta
    assert _contacts_fingerprint(synced) == before, "re-running with the fixed mapping restores everything"


def test_a_malformed_mapping_fails_at_load_naming_file_and_key(tmp_path: Path, monkeypatch):
    from sync_platform.canonical.mapping.loader import MappingError, load_mappings

    broken = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "data" / "mappings", broken)
    path = broken / "hubspot.yaml"
    path.write_text(path.read_text().replace("email: {source: email", "e_mail: {source: email", 1))
    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(broken))
    with pytest.raises(MappingError) as err:
        load_mappings()
    assert "hubspot.yaml" in str(err.value) and "e_mail" in str(err.value)


def test_no_email_of_the_source_data_reaches_the_logs_of_a_whole_run(harness):
    import io
    import logging

    harness.admin.create(
        "salesforce", "Contact", [{"LastName": "Leak", "Email": "not-an-email leak.test@example.org"}]
    )
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    loggers = [logging.getLogger(), logging.getLogger("dagster")]  # dagster's does not propagate to root
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        results = [harness.run(crm)[0] for crm in ("salesforce", "hubspot", "dynamics")]
        results.append(harness.run_job("canonical_build", raise_on_error=False)[0])
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    # what Python logging saw, plus what Dagster recorded for the runs (its per-run log manager)
    text = captured.getvalue() + "\n".join(e.message or "" for r in results for e in r.all_events)
    assert "canonical_build" in text and "quality_gate" in text, "the capture saw the runs' log lines"
    emails = {
        row[0].strip()
        for crm, table, column in (
            ("salesforce", "contacts", "email"),
            ("hubspot", "contacts", "email"),
            ("dynamics", "contacts", "emailaddress1"),
        )
        for row in harness.rows(f"SELECT {column} FROM raw_{crm}.{table} WHERE {column} IS NOT NULL")
    }
    assert "not-an-email leak.test@example.org" in emails
    leaked = [e for e in emails if e in text or e.split(" ")[-1] in text]
    assert leaked == []


def test_cli_checks_mappings_and_lists_and_releases_quarantine(synced, tmp_path: Path):
    from typer.testing import CliRunner

    from sync_platform.cli import app

    runner = CliRunner()
    checked = runner.invoke(app, ["mapping", "check"])
    assert checked.exit_code == 0 and checked.output.count("ok  ") == 3
    broken = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "data" / "mappings", broken)
    (broken / "dynamics.yaml").write_text(
        (broken / "dynamics.yaml").read_text().replace("normalize: email", "normalize: emial", 1)
    )
    bad = runner.invoke(app, ["mapping", "check", "--directory", str(broken)])
    assert bad.exit_code == 1 and "dynamics.yaml" in bad.output and "emial" in bad.output

    synced.run_job("canonical_build")
    listing = runner.invoke(app, ["quarantine", "list", "--entity", "contact"])
    assert listing.exit_code == 0 and "email_format" in listing.output
    assert "***" in listing.output, "values are masked"
    system, source_id = synced.rows(
        "SELECT source_system, source_id FROM ops.quarantine WHERE entity = 'contact' LIMIT 1"
    )[0]
    released = runner.invoke(app, ["quarantine", "release", system, source_id])
    assert released.exit_code == 0 and "released" in released.output
    again = runner.invoke(app, ["quarantine", "release", system, source_id])
    assert again.exit_code == 1
