"""``["monitor", "sync_metrics"]`` and ``sync-platform status`` over a real sync."""

from __future__ import annotations

from datetime import UTC, datetime

from typer.testing import CliRunner

from sync_platform.cli import app
from sync_platform.core.errors import CrmRequestError, ErrorKind
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.alerts import Finding
from sync_platform.ops.dead_letters import DeadLetterQueue


def test_sync_metrics_and_status_show_throughput_lag_dead_letters_drift_and_alerts(monitor):
    monitor.run("salesforce_sync")
    warehouse = Warehouse.from_env()
    DeadLetterQueue(warehouse).add_failure(
        CrmRequestError("hubspot", ErrorKind.SERVER_ERROR, "bad gateway", status=502, attempts=6),
        ["contacts"],
        None,
    )

    result = monitor.run("sync_metrics_job")
    [mat] = [e.materialization for e in result.get_asset_materialization_events()]
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert meta["objects"] == 9 and meta["objects_synced"] == 3
    assert isinstance(meta["salesforce_records_per_s"], float) and meta["salesforce_records_per_s"] > 0
    assert meta["salesforce_requests"] > 0 and isinstance(meta["salesforce_lag_s"], float)
    assert 0 < meta["salesforce_api_budget_remaining"] < 100_000  # from Sforce-Limit-Info
    assert meta["hubspot_dead_letters"] == 1 and meta["hubspot_requests"] == 0
    assert "| salesforce | contacts |" in meta["by_object"]

    rows = warehouse.query(
        "SELECT crm, object, rows_extracted, records_per_s, requests, api_budget_remaining, "
        "dead_letters_pending, errors_by_kind FROM ops.sync_metrics ORDER BY crm, object"
    )
    assert len(rows) == 9
    contacts = next(r for r in rows if r[:2] == ("salesforce", "contacts"))
    assert (
        contacts[2] == 500 and contacts[3] > 0 and contacts[4] > 0 and contacts[5] > 0 and contacts[7] == "{}"
    )
    assert next(r for r in rows if r[:2] == ("hubspot", "contacts"))[6] == 1
    monitor.run("sync_metrics_job")
    assert warehouse.query("SELECT count(DISTINCT measured_at) FROM ops.sync_metrics") == [(2,)], (
        "a time series"
    )

    monitor.book().report(
        "drift:",
        [
            Finding(
                key="drift:salesforce:contacts",
                severity="error",
                finding="drift_above_threshold",
                crm="salesforce",
                message="salesforce contacts drift 0.80% > 0.50%",
            )
        ],
    )
    warehouse.query("CREATE SCHEMA IF NOT EXISTS reconcile")
    warehouse.query(
        "CREATE TABLE reconcile.drift_history (checked_at TIMESTAMPTZ, crm VARCHAR, entity VARCHAR, "
        "source_records BIGINT, warehouse_records BIGINT, missing BIGINT, extra BIGINT, stale BIGINT, "
        "diverged BIGINT, drift_share DOUBLE, threshold DOUBLE, status VARCHAR, run_id VARCHAR)"
    )
    for at, share, status in (
        (datetime(2026, 1, 1, tzinfo=UTC), 0.02, "error"),
        (datetime(2026, 1, 2, tzinfo=UTC), 0.008, "error"),
    ):
        warehouse.query(
            "INSERT INTO reconcile.drift_history VALUES (?, 'salesforce', 'contacts', 500, 496, 4, 0, "
            "0, 0, ?, 0.005, ?, 'r1')",
            (at, share, status),
        )

    out = CliRunner().invoke(app, ["status"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    header = next(line for line in lines if line.startswith("crm "))
    assert header.split() == [
        "crm",
        "last",
        "run",
        "when",
        "last",
        "sync",
        "lag",
        "newest",
        "change",
        "dead",
        "letters",
        "drift",
    ]
    salesforce = next(line for line in lines if line.startswith("salesforce "))
    # the sync ran moments ago: the lag is seconds or minutes, while the sandbox's newest record
    # (generated data, nothing changed since) is days old: two figures, two names
    lag, newest = salesforce.split()[7:9]  # crm, status, job, when (2), last sync (2), lag, newest
    assert lag.endswith(("s", "m")) and newest.endswith("d"), salesforce
    assert "SUCCESS (salesforce_sync)" in salesforce and "contacts 0.80% (error)" in salesforce
    hubspot = next(line for line in lines if line.startswith("hubspot "))
    assert hubspot.split()[1] == "never" and hubspot.split()[-2:] == ["1", "-"]
    assert "open alerts (1):" in out.output
    assert any(
        line.startswith("error ") and "drift:salesforce:contacts" in line and "0.80% > 0.50%" in line
        for line in lines
    )
