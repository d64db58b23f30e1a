"""The canonical layer end to end: raw tables from the sandbox → mapping → pandera gate → canonical."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sync_platform.settings import PROJECT_ROOT


@pytest.fixture
def synced(harness):
    for crm in ("salesforce", "hubspot", "dynamics"):
        harness.run(crm)
    return harness


def _contacts_fingerprint(harness) -> list[tuple]:
    return harness.rows("SELECT source_system, count(*), count(email), min(email), max(email) "
                        "FROM canonical.contacts GROUP BY source_system ORDER BY source_system")


def test_the_canonical_model_builds_from_all_three_crms(synced):
    result, meta = synced.run_job("canonical_build")
    assert result.success
    contacts = meta["contacts"]
    assert contacts["gate"] == "passed" and contacts["rows_in"] == 1_500
    assert 0 < contacts["rows_rejected"] <= 0.01 * 1_500, "the seeded invalid emails are quarantined"
    assert contacts["rule_counts"].get("email_format", 0) >= 1
    assert contacts["mapping_versions"] == {"dynamics": 1, "hubspot": 1, "salesforce": 1}
    rows = synced.rows("SELECT count(*), count(DISTINCT customer_id), count(DISTINCT source_system) "
                       "FROM canonical.contacts")[0]
    assert rows[0] == contacts["rows_good"] and rows[1] < rows[0] and rows[2] == 3, "golden ids link CRMs"
    quarantined = synced.rows("SELECT rule, value_masked FROM ops.quarantine WHERE entity = 'contact'")
    assert quarantined and all("@" not in v or "***" in v for _, v in quarantined), "PII masked in quarantine"
    evaluations = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert evaluations["contacts"].severity.value == "WARN" and not evaluations["contacts"].passed


def test_the_incident_a_field_swap_is_stopped_before_it_corrupts_anything(synced, tmp_path: Path, monkeypatch):
    """An import update swaps two fields for one CRM (~a third of all contacts): the gate must hold."""
    synced.run_job("canonical_build")
    before = _contacts_fingerprint(synced)

    broken = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "data" / "mappings", broken)
    path = broken / "salesforce.yaml"
    text = path.read_text()
    text = text.replace("email: {source: email, normalize: email}", "email: {source: last_name, normalize: email}")
    text = text.replace("last_name: {source: last_name, normalize: name}", "last_name: {source: email, normalize: name}")
    path.write_text(text)
    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(broken))

    result, meta = synced.run_job("canonical_build", raise_on_error=False)
    assert not result.success
    assert meta["contacts"]["gate"].startswith("blocked") and meta["contacts"]["rejected_share"] > 0.25
    assert "interactions" not in meta, "downstream did not materialize"
    assert _contacts_fingerprint(synced) == before, "the previous good table is intact"
    alerts = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert any(e.asset_observation_data.asset_observation.metadata["alert"].value
               == "canonical_blast_radius_exceeded" for e in alerts)
    run_cases = synced.rows("SELECT count(DISTINCT source_id) FROM ops.quarantine WHERE run_id = ? "
                            "AND entity = 'contact'", (result.run_id,))[0][0]
    assert run_cases >= 0.25 * 1_500, "the rejected rows are kept, not dropped"

    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(PROJECT_ROOT / "data" / "mappings"))
    fixed, meta = synced.run_job("canonical_build")
    assert fixed.success and meta["contacts"]["gate"] == "passed" and "interactions" in meta
    assert _contacts_fingerprint(synced) == before, "re-running with the fixed mapping restores everything"


def test_a_malformed_mapping_fails_at_load_naming_file_and_key(tmp_path: Path, monkeypatch):
    from sync_platform.mapping.loader import MappingError, load_mappings

    broken = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "data" / "mappings", broken)
    path = broken / "hubspot.yaml"
    path.write_text(path.read_text().replace("email: {source: email", "e_mail: {source: email", 1))
    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(broken))
    with pytest.raises(MappingError) as err:
        load_mappings()
    assert "hubspot.yaml" in str(err.value) and "e_mail" in str(err.value)
