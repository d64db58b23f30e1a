"""Write-back through its doors: `sync-platform outbound put`, then the `outbound_sync` job run by
`dagster job execute` (and by `sync-platform outbound run`), against the sandbox's three CRMs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sync_platform.cli import app
from sync_platform.core.settings import PROJECT_ROOT
from sync_platform.outbound.plan import derived_key
from sync_platform.outbound.store import OutboundStore

BIN = Path(sys.executable).parent


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _env(harness) -> dict[str, str]:
    home = harness.data_dir.parent / "dagster_home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    for name in ("SYNC_PLATFORM_WAREHOUSE", "SYNC_PLATFORM_CONFIG", "SYNC_PLATFORM_MAPPINGS_DIR"):
        env.pop(name, None)
    return env


def _shared_customer(harness) -> tuple[str, dict[str, str]]:
    rows = harness.rows(
        "SELECT customer_id, source_system, source_id FROM canonical.contacts WHERE deleted_at IS NULL "
        "AND customer_id IN (SELECT customer_id FROM canonical.contacts WHERE deleted_at IS NULL "
        "GROUP BY customer_id HAVING count(DISTINCT source_system) = 3) ORDER BY customer_id, source_system"
    )
    assert rows, "the sandbox shares people across its three CRMs"
    golden = rows[0][0]
    return golden, {crm: record for g, crm, record in rows if g == golden}


def _sandbox_records(harness, crm: str, obj: str, field: str, value: str) -> list[dict]:
    store = harness.server.state.stores[crm][obj]
    return [rec for _, rec in store.iter_by_index() if rec.get(field) == value]


@pytest.mark.timeout(600)
def test_a_change_put_three_times_reaches_all_three_crms_once_through_dagster_job_execute(harness) -> None:
    harness.run_job("sync_all")
    harness.run_job("canonical_build")
    golden, records = _shared_customer(harness)
    for _ in range(3):  # the support system's trigger fires three times
        assert "queued" in cli(
            "outbound",
            "put",
            "contact",
            "--target",
            golden,
            "--set",
            "title=VP Support",
            "--change-id",
            "ticket-9001",
        )
    writes_before = harness.admin.stats()
    done = subprocess.run(
        [
            str(BIN / "dagster"),
            "job",
            "execute",
            "-m",
            "sync_platform.definitions",
            "-d",
            str(PROJECT_ROOT),
            "-j",
            "outbound_sync",
        ],
        env=_env(harness),
        cwd=harness.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert harness.admin.get("salesforce", "Contact", records["salesforce"])["Title"] == "VP Support"
    assert harness.admin.get("hubspot", "contacts", records["hubspot"])["jobtitle"] == "VP Support"
    assert harness.admin.get("dynamics", "contacts", records["dynamics"])["jobtitle"] == "VP Support"
    delivered = OutboundStore(harness.warehouse).delivered()
    assert {crm for _, crm in delivered} == {"salesforce", "hubspot", "dynamics"}
    assert {d.status for d in delivered.values()} == {"written"}
    assert writes_before != harness.admin.stats()
    calls = harness.admin.stats()
    cli("outbound", "run")  # a second pass: nothing pending
    assert harness.admin.stats()["requests"] == calls["requests"], "the second pass called no CRM"
    assert cli("outbound", "status").count("written") == 3


@pytest.mark.timeout(600)
def test_a_run_killed_after_the_crm_applied_a_create_does_not_create_it_twice(harness) -> None:
    """SIGKILL between the CRM's answer and the bookkeeping: the CRM applied the create, its answer
    is held back (``lost_response``), the process dies; the next run creates nothing new."""
    cli(
        "outbound",
        "put",
        "contact",
        "--set",
        "last_name=Okafor",
        "--set",
        "title=CFO",
        "--change-id",
        "new-9",
    )
    key = derived_key("new-9")
    harness.admin.inject(
        "lost_response", crm="salesforce", method="PATCH", path="/composite/sobjects", delay=120
    )
    process = subprocess.Popen(
        [str(BIN / "sync-platform"), "outbound", "run"],
        env=_env(harness),
        cwd=harness.data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _sandbox_records(harness, "salesforce", "Contact", "External_Id__c", key):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the create never reached the CRM"
            time.sleep(0.1)  # polling the CRM's state, not waiting for time to pass
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert OutboundStore(harness.warehouse).delivered() == {}, "killed before the bookkeeping"
    harness.admin.clear_faults()
    cli("outbound", "run")
    created = _sandbox_records(harness, "salesforce", "Contact", "External_Id__c", key)
    assert len(created) == 1 and created[0]["LastName"] == "Okafor"
    (answer,) = OutboundStore(harness.warehouse).delivered().values()
    assert answer.status == "written" and answer.created is False, "the retry found the record it had created"
