"""Dead-letter depth, sync error rate and the canonical quality gate as alerts, through the sensors."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

import dagster as dg

from sync_platform.core.errors import CrmRequestError, ErrorKind
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.dead_letters import DeadLetterQueue


def add_run(instance: dg.DagsterInstance, job: str, failed: bool) -> None:
    """A finished run in the instance's history (cheaper than executing one for the error-rate window)."""
    status = dg.DagsterRunStatus.FAILURE if failed else dg.DagsterRunStatus.SUCCESS
    instance.add_run(dg.DagsterRun(job_name=job, status=status))


def test_dead_letters_and_a_high_error_rate_alert_with_the_taxonomy_and_resolve(monitor):
    monitor.configure(alerts={"dead_letter_error_depth": 2, "error_rate_min_runs": 2, "error_rate_max": 0.5})
    t0 = datetime.now(UTC)
    assert monitor.tick("dead_letter_alerts", t0) == "dead letters: all clear. error rate: all clear"

    monitor.admin.inject("error", crm="hubspot", path="/crm/v3", status=502, count=100)
    assert not monitor.run("hubspot_sync", raise_on_error=False).success  # three dead letters, one per object
    add_run(monitor.instance, "hubspot_sync", failed=False)
    message = monitor.tick("dead_letter_alerts", t0 + timedelta(minutes=1))
    assert (
        message == "dead letters: raised dead_letters:hubspot. error rate: all clear"
    )  # 1 of 2 is not > 50 %
    [alert] = monitor.book().open_alerts()
    assert alert.severity == "error" and alert.finding == "dead_letters_pending"  # depth 3 > 2
    assert alert.details["by_kind"] == {"server_error": 3} and alert.details["depth"] == 3
    assert alert.details["by_object"] == {"companies": 1, "contacts": 1, "tickets": 1}
    assert alert.message.startswith("3 dead letter(s) pending for hubspot (server_error 3)")

    add_run(monitor.instance, "hubspot_sync", failed=True)  # a failure without a dead letter: unclassified
    message = monitor.tick("dead_letter_alerts", t0 + timedelta(minutes=2))
    assert message == "dead letters: 1 still open. error rate: raised error_rate:hubspot"
    rate = next(a for a in monitor.book().open_alerts() if a.key == "error_rate:hubspot")
    assert rate.severity == "warning" and rate.details["by_kind"] == {"server_error": 1, "unclassified": 1}
    assert rate.message.startswith("2 of the last 3 hubspot syncs failed (67% > 50%)")
    [eml] = [p for p in monitor.outbox() if b"error_rate:hubspot" in p.read_bytes()]
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert parsed["X-Sync-Platform-Alert-Key"] == "error_rate:hubspot"

    queue = DeadLetterQueue(Warehouse.from_env())
    queue.mark_replayed([d.id for d in queue.pending()], run_id="replayed-by-test")
    for _ in range(2):
        add_run(monitor.instance, "hubspot_sync", failed=False)  # 2 of 5 failed
    message = monitor.tick("dead_letter_alerts", t0 + timedelta(minutes=3))
    assert message == "dead letters: resolved dead_letters:hubspot. error rate: resolved error_rate:hubspot"
    texts = [r["text"] for r in monitor.admin.alerts()]
    assert len(texts) == 4 and sum(t.startswith(":white_check_mark: RESOLVED") for t in texts) == 2


def test_pending_dead_letters_below_the_error_depth_warn(monitor):
    monitor.configure(alerts={"dead_letter_max_depth": 1, "dead_letter_error_depth": 100})
    queue = DeadLetterQueue(Warehouse.from_env())
    error = CrmRequestError(
        "dynamics",
        ErrorKind.RATE_LIMIT,
        "429",
        method="GET",
        path="/api/data/v9.2/contacts",
        status=429,
        attempts=6,
    )
    queue.add_failure(error, ["contacts"], run_id=None)
    assert monitor.tick("dead_letter_alerts", datetime.now(UTC)).startswith("dead letters: all clear"), (
        "one pending is within dead_letter_max_depth 1"
    )
    queue.add_failure(error, ["contacts"], run_id=None)
    monitor.tick("dead_letter_alerts", datetime.now(UTC))
    [alert] = monitor.book().open_alerts(crm="dynamics")
    assert alert.severity == "warning" and alert.details["by_kind"] == {"rate_limit": 2}


def test_a_blocked_canonical_build_is_an_alert_until_a_build_passes(monitor):
    t0 = datetime.now(UTC)
    blocked = {
        "gate": "blocked: previous table kept",
        "rows_in": 900,
        "rows_rejected": 300,
        "rejected_share": 0.33333,
        "threshold": 0.01,
        "rule_counts": {"email_format": 300},
    }
    monitor.instance.report_runless_asset_event(
        dg.AssetMaterialization(["canonical", "contacts"], metadata=blocked)
    )
    assert monitor.tick("quality_gate_alerts", t0) == "raised quality_gate:canonical/contacts"
    [alert] = monitor.book().open_alerts()
    assert alert.finding == "canonical_blast_radius_exceeded" and alert.severity == "error"
    assert alert.message == (
        "canonical/contacts: 300 of 900 rows rejected (33.3% > 1.0%); the previous table "
        "was kept and downstream stopped"
    )
    assert alert.details["rule_counts"] == {"email_format": 300}

    passed = {**blocked, "gate": "passed", "rows_rejected": 2, "rejected_share": 0.002}
    monitor.instance.report_runless_asset_event(
        dg.AssetMaterialization(["canonical", "contacts"], metadata=passed)
    )
    assert (
        monitor.tick("quality_gate_alerts", t0 + timedelta(minutes=1))
        == "resolved quality_gate:canonical/contacts"
    )


def test_a_sensor_stands_aside_while_a_run_writes_to_duckdb_but_not_forever(monitor):
    monitor.instance.add_run(dg.DagsterRun(job_name="salesforce_sync", status=dg.DagsterRunStatus.STARTED))
    definition = monitor.defs.resolve_sensor_def("dead_letter_alerts")
    cursor = None
    messages = []
    for _ in range(6):
        context = dg.build_sensor_context(
            instance=monitor.instance,
            definitions=monitor.defs,
            cursor=cursor,
            resources=monitor.defs.resources,
        )
        data = definition.evaluate_tick(context)
        messages.append(data.skip_message)
        cursor = data.cursor
    assert all("standing aside" in m for m in messages[:5])
    assert messages[5] == "dead letters: all clear. error rate: all clear"
