"""The README's main command, end to end on a small sandbox: what it prints is what happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_platform.cli.demo import CHANGES, run_demo


def test_the_demo_syncs_changes_catches_the_frozen_cursor_and_repairs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "unused"))
    for name in ("SYNC_PLATFORM_DATA_DIR", "SYNC_PLATFORM_SANDBOX_URL"):
        monkeypatch.setenv(name, "")  # restored after the test; the demo sets its own
    lines: list[str] = []
    runs = run_demo(300, echo=lines.append, data_dir=tmp_path / "demo")

    for crm in ("salesforce", "hubspot", "dynamics"):
        assert runs["full"][(crm, "contacts")]["rows_total"] == 300
        inc = runs["incremental"][(crm, "contacts")]
        assert inc["rows_inserted"] == CHANGES["created"]
        assert inc["rows_deleted"] == CHANGES["deleted"]
        assert inc["rows_updated"] == CHANGES["updated_by_users"] + CHANGES["updated_by_automation"]
    reconciled = runs["reconcile"]
    assert reconciled[("salesforce", "contacts")]["diverged"] == 3  # 1 % of 300, edited without a stamp
    assert reconciled[("remediate", "salesforce")]["remaining_drift"]["contacts"] == 0
    for crm, obj in (("hubspot", "contacts"), ("dynamics", "contacts")):
        assert reconciled[(crm, obj)]["missing"] + reconciled[(crm, obj)]["diverged"] == 0
    across = runs["report"][("reconcile", "across_crms")]
    assert across["linked_golden_records"]["contacts"] > 0  # the sandbox seeds people held by several CRMs
    report = Path(runs["report"][("reconcile", "report")]["html"])
    assert report.exists() and report.is_relative_to(tmp_path)
    assert any(line.startswith("salesforce.contacts") and "0 differing" in line for line in lines)
    assert runs["canonical"][("canonical", "contacts")]["rows_in"] > 0
    restored = runs["restore"]  # the script's 3 edits undone in Salesforce itself, from the raw history
    assert restored["records"] == 3 and restored["written"] == 3, restored
    assert any(line.startswith("restore: 3 Salesforce contact(s) differed") for line in lines)
    written = runs["write_back"]  # one outbound change reaches every CRM holding the customer, once
    assert written is not None
    assert [(crm, status) for crm, _, status in written["answers"]] == [
        ("dynamics", "written"),
        ("hubspot", "written"),
        ("salesforce", "written"),
    ]

    # progress and the summary on screen; Dagster's debug lines and raw alert JSON in the log file
    screen = capfd.readouterr()
    noise = [
        line for line in (screen.out + screen.err).splitlines() if "DEBUG" in line or line.startswith("{")
    ]
    assert noise == [], noise[:5]
    log = tmp_path / "demo" / "demo.log"
    assert any(line == f"Full logs of every run (debug included): {log}" for line in lines)
    assert 'Finished execution of run for "reconcile_report"' in log.read_text()
