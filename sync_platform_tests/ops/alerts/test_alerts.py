"""The alert book and its sinks: raise once, de-duplicate, escalate, resolve, never lose a notice."""

from __future__ import annotations

import email
import email.policy
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from sync_platform.core.config import AlertsConfig
from sync_platform.core.warehouse import POSTGRES, Warehouse
from sync_platform.ops.alerts import (
    AlertBook,
    AlertDeliveryError,
    EmailFileSink,
    Finding,
    LogSink,
    Notice,
    WebhookSink,
    sinks_from_config,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class RecordingSink:
    """Keeps every notice; fails the first ``failures`` deliveries like an unreachable endpoint."""

    def __init__(self, name: str = "recorder", failures: int = 0) -> None:
        self.name = name
        self.failures = failures
        self.notices: list[Notice] = []

    def send(self, notice: Notice) -> None:
        if self.failures:
            self.failures -= 1
            raise AlertDeliveryError(f"{self.name}: endpoint down")
        self.notices.append(notice)

    @property
    def kinds(self) -> list[tuple[str, str]]:
        return [(n.kind, n.alert.key) for n in self.notices]


def lag(crm: str = "salesforce", severity: str = "warning", minutes: int = 40) -> Finding:
    return Finding(
        key=f"freshness:raw/{crm}/contacts",
        severity=severity,
        finding="stale_asset",
        message=f"raw/{crm}/contacts last updated {minutes} min ago (SLO 30 min)",
        crm=crm,
        asset=f"raw/{crm}/contacts",
        details={"lag_minutes": minutes, "slo_minutes": 30},
    )


@pytest.fixture
def duckdb_warehouse(tmp_path) -> Warehouse:
    return Warehouse("duckdb", path=tmp_path / "warehouse.duckdb")


def check_lifecycle(warehouse: Warehouse) -> None:
    sink = RecordingSink()
    book = AlertBook(warehouse, sinks=[sink])

    first = book.report("freshness", [lag()], now=T0)
    assert first.raised == ["freshness:raw/salesforce/contacts"] and first.pending_notices == 0
    second = book.report("freshness", [lag(minutes=55)], now=T0 + timedelta(minutes=5))
    assert second.raised == [] and second.repeated == ["freshness:raw/salesforce/contacts"]
    assert sink.kinds == [("raised", "freshness:raw/salesforce/contacts")], "a repeat must not notify again"

    [alert] = book.open_alerts()
    assert (alert.occurrences, alert.first_seen, alert.last_seen) == (2, T0, T0 + timedelta(minutes=5))
    assert alert.details == {"lag_minutes": 55, "slo_minutes": 30} and alert.notified_at == T0
    assert book.open_alerts(crm="hubspot") == []

    third = book.report("freshness", [], now=T0 + timedelta(minutes=20))
    assert third.resolved == ["freshness:raw/salesforce/contacts"]
    assert sink.kinds[-1] == ("resolved", "freshness:raw/salesforce/contacts")
    assert book.open_alerts() == []
    [closed] = book.alerts()
    assert closed.resolved_at == T0 + timedelta(minutes=20) and closed.pending_notice is None

    again = book.report("freshness", [lag()], now=T0 + timedelta(minutes=30))
    assert again.raised == ["freshness:raw/salesforce/contacts"], "a new incident after resolution"
    assert len(book.alerts()) == 2 and len(book.open_alerts()) == 1


def test_raise_dedupe_and_resolve_on_duckdb(duckdb_warehouse):
    check_lifecycle(duckdb_warehouse)


def test_raise_dedupe_and_resolve_on_postgres(postgres_db):  # noqa: F811
    warehouse = Warehouse(POSTGRES, dsn=postgres_db)
    check_lifecycle(warehouse)
    # PostgreSQL enforces one open alert per key by itself as well
    import psycopg2

    with pytest.raises(psycopg2.errors.UniqueViolation):
        warehouse.query(
            "INSERT INTO ops.alerts (id, key, severity, finding, message, details, first_seen, "
            "last_seen, occurrences, delivered_sinks, notify_attempts) SELECT 'dup', key, severity, "
            "finding, message, details, first_seen, last_seen, 1, '[]', 0 FROM ops.alerts "
            "WHERE resolved_at IS NULL"
        )


def test_escalation_notifies_once_more_and_scopes_do_not_touch_each_other(duckdb_warehouse):
    sink = RecordingSink()
    book = AlertBook(duckdb_warehouse, sinks=[sink])
    other = Finding(
        key="dead_letters:hubspot",
        severity="warning",
        finding="dead_letters_pending",
        message="3 dead letters pending for hubspot",
        crm="hubspot",
    )
    book.report("dead_letters:", [other], now=T0)
    book.report("freshness", [lag()], now=T0)
    out = book.report("freshness", [lag(severity="error")], now=T0 + timedelta(minutes=1))
    assert out.escalated == ["freshness:raw/salesforce/contacts"]
    book.report("freshness", [lag(severity="error")], now=T0 + timedelta(minutes=2))
    assert [k for k, _ in sink.kinds] == ["raised", "raised", "escalated"]
    assert {a.key for a in book.open_alerts()} == {
        "dead_letters:hubspot",
        "freshness:raw/salesforce/contacts",
    }

    book.report("freshness", [], now=T0 + timedelta(minutes=3))
    assert [a.key for a in book.open_alerts()] == ["dead_letters:hubspot"], "another scope stays open"
    with pytest.raises(ValueError, match="outside the scope"):
        book.report("drift:", [lag()])


def test_a_failing_sink_keeps_the_notice_pending_and_it_is_retried(duckdb_warehouse):
    flaky, steady = RecordingSink("flaky", failures=2), RecordingSink("steady")
    book = AlertBook(duckdb_warehouse, sinks=[steady, flaky])
    out = book.report("freshness", [lag()], now=T0)
    assert out.raised and out.pending_notices == 1
    [alert] = book.open_alerts()
    assert alert.notified_at is None and alert.pending_notice == "raised"
    assert duckdb_warehouse.query("SELECT notify_attempts, notify_error FROM ops.alerts") == [
        (1, "flaky: endpoint down")
    ]

    assert book.deliver(T0 + timedelta(minutes=1)) == 1  # still down
    assert book.report("freshness", [lag()], now=T0 + timedelta(minutes=2)).pending_notices == 0
    assert flaky.kinds == steady.kinds == [("raised", "freshness:raw/salesforce/contacts")], (
        "delivered once to each sink: the one that worked is not repeated"
    )
    [alert] = book.open_alerts()
    assert alert.notified_at == T0 + timedelta(minutes=2) and alert.pending_notice is None


def test_webhook_sink_posts_slack_messages_into_the_sandbox_receiver(duckdb_warehouse, sandbox, admin):
    url = f"{sandbox.base_url}/__sandbox/webhooks/alerts"
    book = AlertBook(duckdb_warehouse, sinks=[WebhookSink(url, timeout=2)])
    book.report("freshness", [lag()], now=T0)
    book.report("freshness", [lag()], now=T0 + timedelta(minutes=1))
    book.report("freshness", [], now=T0 + timedelta(minutes=2))
    received = admin.alerts()
    assert len(received) == 2
    raised, resolved = received
    assert raised["text"].startswith(":warning: WARNING stale_asset: raw/salesforce/contacts last updated")
    assert resolved["text"].startswith(":white_check_mark: RESOLVED stale_asset")
    facts = {f["title"]: f["value"] for f in raised["attachments"][0]["fields"]}
    assert facts == {
        "severity": "warning",
        "finding": "stale_asset",
        "crm": "salesforce",
        "asset": "raw/salesforce/contacts",
        "key": "freshness:raw/salesforce/contacts",
    }
    assert raised["blocks"][0]["type"] == "section" and "lag_minutes" in raised["attachments"][0]["text"]
    assert admin.clear_alerts() == 2 and admin.alerts() == []


def test_an_unreachable_webhook_never_reveals_its_url(duckdb_warehouse, sandbox):
    url = f"{sandbox.base_url}/__sandbox/no-such-hook/T000/SECRETTOKEN"
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("sync_platform.alerts").addHandler(handler)
    try:
        book = AlertBook(
            duckdb_warehouse, sinks=[WebhookSink(url, timeout=2, max_attempts=2, backoff_seconds=0.01)]
        )
        assert book.report("freshness", [lag()], now=T0).pending_notices == 1
    finally:
        logging.getLogger("sync_platform.alerts").removeHandler(handler)
    error = duckdb_warehouse.query("SELECT notify_error FROM ops.alerts")[0][0]
    assert error == "webhook: HTTP 404 (not retried)"
    logged = " ".join(r.getMessage() for r in records)
    assert "not delivered yet" in logged and "SECRETTOKEN" not in logged and "SECRETTOKEN" not in error
    assert "SECRETTOKEN" not in repr(book.sinks[0])


def test_webhook_retries_transient_failures(duckdb_warehouse):
    import httpx

    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        return httpx.Response(503 if len(calls) < 3 else 200)

    sink = WebhookSink(
        "http://hooks.invalid/x",
        max_attempts=3,
        backoff_seconds=0.001,
        transport=httpx.MockTransport(handler),
    )
    assert AlertBook(duckdb_warehouse, sinks=[sink]).report("freshness", [lag()], now=T0).pending_notices == 0
    assert len(calls) == 3


def test_email_sink_writes_a_parseable_eml_without_pii(duckdb_warehouse, tmp_path):
    outbox = tmp_path / "outbox"
    book = AlertBook(duckdb_warehouse, sinks=[EmailFileSink(outbox, ["oncall@example.org"])])
    finding = Finding(
        key="dead_letters:hubspot",
        severity="error",
        finding="dead_letters_pending",
        message="150 dead letters pending for hubspot, last about jane.doe@example.com",
        crm="hubspot",
        details={"by_kind": {"server_error": 150}},
    )
    book.report("dead_letters:", [finding], now=T0)
    [path] = sorted(outbox.glob("*.eml"))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["Subject"].startswith("[sync_platform] ERROR dead_letters_pending: 150 dead letters")
    assert (
        message["To"] == "oncall@example.org"
        and message["X-Sync-Platform-Alert-Key"] == "dead_letters:hubspot"
    )
    assert message["Message-ID"] and message["Date"].datetime.tzinfo is not None
    body = message.get_content()
    assert '"server_error": 150' in body and "key          dead_letters:hubspot" in body
    assert "jane.doe@example.com" not in path.read_text() and "j***@e***.com" in message["Subject"]

    book.report("dead_letters:", [], now=T0 + timedelta(minutes=1))
    assert len(list(outbox.glob("*.eml"))) == 2 and not list(outbox.glob("*.part"))


def test_log_sink_writes_one_json_line(duckdb_warehouse):
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("test_alerts_log_sink")
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    AlertBook(duckdb_warehouse, sinks=[LogSink(logger)]).report("freshness", [lag(severity="error")], now=T0)
    [record] = records
    assert record.levelno == logging.ERROR
    line = json.loads(record.getMessage())
    assert line["notice"] == "raised" and line["key"] == "freshness:raw/salesforce/contacts"
    assert line["details"] == {"lag_minutes": 40, "slo_minutes": 30}


def test_sinks_come_from_config_and_the_webhook_only_with_its_secret(monkeypatch, tmp_path):
    monkeypatch.delenv("SYNC_PLATFORM_ALERT_WEBHOOK_URL", raising=False)
    cfg = AlertsConfig()
    assert [s.name for s in sinks_from_config(cfg, outbox=tmp_path)] == ["log", "email"]
    monkeypatch.setenv("SYNC_PLATFORM_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    assert [s.name for s in sinks_from_config(cfg, outbox=tmp_path)] == ["log", "webhook", "email"]
    assert [s.name for s in sinks_from_config(AlertsConfig(sinks=["log"]))] == ["log"]


def test_a_webhook_answering_a_redirect_has_not_delivered(duckdb_warehouse):
    import httpx

    sink = WebhookSink(
        "http://hooks.invalid/x",
        max_attempts=3,
        backoff_seconds=0.001,
        transport=httpx.MockTransport(
            lambda request: httpx.Response(302, headers={"Location": "http://else.invalid/"})
        ),
    )
    assert AlertBook(duckdb_warehouse, sinks=[sink]).report("freshness", [lag()], now=T0).pending_notices == 1
    assert (
        duckdb_warehouse.query("SELECT notify_error FROM ops.alerts")[0][0]
        == "webhook: HTTP 302 (not retried)"
    )
