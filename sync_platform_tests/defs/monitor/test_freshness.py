"""Freshness end to end: a CRM outage longer than the SLO raises an alert; recovery resolves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

SALESFORCE = ["raw/salesforce/accounts", "raw/salesforce/cases", "raw/salesforce/contacts"]
KEYS = [f"freshness:{a}" for a in SALESFORCE]


def test_an_outage_longer_than_the_slo_alerts_once_escalates_and_resolves_after_recovery(monitor):
    t0 = datetime.now(UTC).replace(microsecond=0)
    first = monitor.run("salesforce_sync", at=t0)
    checked = [e for e in first.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert checked == [], "freshness checks run on their own sensor, not as a step of every sync"
    assert monitor.tick("freshness_alerts", t0 + timedelta(minutes=29)) == "all clear"  # SLO: 2 × 15 min

    monitor.admin.inject("outage", crm="salesforce", seconds=86_400)
    failed = monitor.run("salesforce_sync", at=t0 + timedelta(minutes=15), raise_on_error=False)
    assert not failed.success
    assert monitor.tick("freshness_alerts", t0 + timedelta(minutes=29)) == "all clear", "not yet past the SLO"

    message = monitor.tick("freshness_alerts", t0 + timedelta(minutes=31))
    assert message.startswith("raised " + ", ".join(KEYS))
    alerts = monitor.book().open_alerts(crm="salesforce")
    assert [a.key for a in alerts] == KEYS and {a.severity for a in alerts} == {"warning"}
    assert alerts[0].details["slo_minutes"] == 30 and alerts[0].details["age_minutes"] == 31
    assert monitor.book().open_alerts(crm="hubspot") == [], "never synced: no verdict, no page"
    received = monitor.admin.alerts()
    assert len(received) == 3 and all(
        r["text"].startswith(":warning: WARNING stale_asset: raw/salesforce/") for r in received
    )
    assert len(monitor.outbox()) == 3

    # Dagster's own freshness check agrees
    checks = monitor.run("freshness_checks", at=t0 + timedelta(minutes=31))
    verdicts = {
        e.asset_check_evaluation_data.asset_key.to_user_string(): e.asset_check_evaluation_data.passed
        for e in checks.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert {a: verdicts[a] for a in SALESFORCE} == {a: False for a in SALESFORCE}

    assert monitor.tick("freshness_alerts", t0 + timedelta(minutes=40)) == "3 still open"
    assert len(monitor.admin.alerts()) == 3, "de-duplicated: no second notice"
    assert "escalated" in monitor.tick("freshness_alerts", t0 + timedelta(minutes=61))  # past 2 × the SLO
    assert {a.severity for a in monitor.book().open_alerts()} == {"error"} and len(
        monitor.admin.alerts()
    ) == 6

    monitor.admin.clear_faults()
    monitor.run("salesforce_sync", at=t0 + timedelta(minutes=62))
    assert monitor.tick("freshness_alerts", t0 + timedelta(minutes=63)) == "resolved " + ", ".join(KEYS)
    assert monitor.book().open_alerts() == []
    resolved = monitor.admin.alerts()[6:]
    assert len(resolved) == 3 and all(
        r["text"].startswith(":white_check_mark: RESOLVED stale_asset") for r in resolved
    )
    [closed] = monitor.book().alerts(key=KEYS[2])
    assert closed.resolved_at == t0 + timedelta(minutes=63) and closed.first_seen == t0 + timedelta(
        minutes=31
    )


def test_slos_follow_the_crm_schedule_and_the_override(monitor):
    from sync_platform.defs.monitor.targets import expectations

    monitor.configure(hubspot={"schedule_minutes": 60})
    slos = {e.asset: e.slo for e in expectations()}
    assert slos["raw/salesforce/contacts"] == timedelta(minutes=30)
    assert slos["raw/hubspot/contacts"] == timedelta(hours=2)
    assert slos["canonical/contacts"] == timedelta(hours=2), "canonical: the loosest of its sources"
    monitor.configure(alerts={"freshness_slo_minutes": 10})
    assert {e.slo for e in expectations()} == {timedelta(minutes=10)}
