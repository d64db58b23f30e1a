"""The alert book: ``ops.alerts``, one open alert per incident key, notices delivered at least once.

A monitor reports *everything it currently sees* for a scope; the book turns that into
incident state: a new key raises an alert (one notice), a key still present is touched
(``last_seen``, ``occurrences``; no new notice unless it escalates from warning to error), and
an open key of the scope that is no longer reported resolves (a resolution notice).

Notices are an outbox: the state change commits first, then each sink is offered the notice;
what a sink refused stays pending (``pending_notice``, ``notified_at`` NULL for a new alert) and
is offered again on the next ``report`` or ``deliver``. The warehouse connection is closed
while sinks run, so a slow webhook never holds DuckDB's file lock.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sync_platform.core.sql import Fragment, ident, idents, sql
from sync_platform.core.warehouse import POSTGRES, Warehouse
from sync_platform.ops.alerts.model import (
    ESCALATED,
    RAISED,
    RESOLVED,
    SEVERITIES,
    Alert,
    AlertOutcome,
    Finding,
    Notice,
)
from sync_platform.ops.alerts.sinks import AlertDeliveryError, AlertSink, sinks_from_config

TABLE = "ops.alerts"
LOGGER = logging.getLogger("sync_platform.alerts.book")  # under the stable name operators route by
_DDL = """
CREATE TABLE IF NOT EXISTS ops.alerts (
    id VARCHAR PRIMARY KEY,
    key VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    crm VARCHAR,
    asset VARCHAR,
    finding VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    details VARCHAR NOT NULL,
    first_seen TIMESTAMP WITH TIME ZONE NOT NULL,
    last_seen TIMESTAMP WITH TIME ZONE NOT NULL,
    occurrences INTEGER NOT NULL,
    resolved_at TIMESTAMP WITH TIME ZONE,
    notified_at TIMESTAMP WITH TIME ZONE,
    pending_notice VARCHAR,
    delivered_sinks VARCHAR NOT NULL,
    notify_attempts INTEGER NOT NULL,
    notify_error VARCHAR
)"""
# PostgreSQL enforces "one open alert per key" itself; DuckDB has no partial indexes, so there
# the single-writer lock plus the read-then-write inside one transaction does
_PG_OPEN_KEY_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open_per_key ON ops.alerts (key) WHERE resolved_at IS NULL"
)
_TABLE = ident(*TABLE.split("."))
_COLUMNS = idents(
    (
        "id",
        "key",
        "severity",
        "finding",
        "message",
        "crm",
        "asset",
        "details",
        "first_seen",
        "last_seen",
        "occurrences",
        "resolved_at",
        "notified_at",
        "pending_notice",
    )
)
_OLDEST_FIRST = Fragment("ORDER BY first_seen, key")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _alert(row: Sequence[Any]) -> Alert:
    (
        id_,
        key,
        severity,
        finding,
        message,
        crm,
        asset,
        details,
        first_seen,
        last_seen,
        occurrences,
        resolved_at,
        notified_at,
        pending,
    ) = row
    return Alert(
        id=id_,
        key=key,
        severity=severity,
        finding=finding,
        message=message,
        crm=crm,
        asset=asset,
        details=json.loads(details or "{}"),
        first_seen=_utc(first_seen),
        last_seen=_utc(last_seen),
        occurrences=int(occurrences),
        resolved_at=_utc(resolved_at),
        notified_at=_utc(notified_at),
        pending_notice=pending,
    )


def _json(details: dict) -> str:
    return json.dumps(details, default=str, sort_keys=True)


class AlertBook:
    def __init__(self, warehouse: Warehouse, sinks: list[AlertSink] | None = None) -> None:
        self.warehouse = warehouse
        self.sinks = sinks_from_config() if sinks is None else list(sinks)

    def _sql(self, template: str, **parts: Fragment) -> str:
        """A statement on ``{table}`` (``ops.alerts``), its ``?`` markers in the engine's own style (the
        statements here run on a DB-API cursor, not through ``Warehouse.query``)."""
        return sql(template, table=_TABLE, **parts).replace("?", self.warehouse.placeholder)

    def _ensure(self, cur: Any) -> None:
        cur.execute("CREATE SCHEMA IF NOT EXISTS ops")
        cur.execute(_DDL)
        if self.warehouse.kind == POSTGRES:
            cur.execute(_PG_OPEN_KEY_INDEX)

    def ensure(self) -> None:
        with self.warehouse.connect() as conn:
            self._ensure(conn.cursor())

    def report(self, scope: str, findings: list[Finding], now: datetime | None = None) -> AlertOutcome:
        """Record what a monitor sees now for ``scope`` (a key prefix) and notify the sinks.

        Every finding's key must start with ``scope``; open alerts of the scope that are not among
        ``findings`` resolve. End a scope with ``:`` when another scope could share its prefix.
        """
        now = _utc(now) or datetime.now(UTC)
        current: dict[str, Finding] = {}
        for f in findings:
            if not f.key.startswith(scope):
                raise ValueError(
                    f"finding key {f.key!r} is outside the scope {scope!r} it was reported under"
                )
            current[f.key] = f
        outcome = AlertOutcome()
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            self._ensure(cur)
            cur.execute(
                self._sql("SELECT {columns} FROM {table} WHERE resolved_at IS NULL", columns=_COLUMNS)
            )
            open_alerts = {a.key: a for a in map(_alert, cur.fetchall()) if a.key.startswith(scope)}
            for key, f in current.items():
                existing = open_alerts.get(key)
                if existing is None:
                    cur.execute(
                        self._sql(
                            "INSERT INTO {table} (id, key, severity, crm, asset, finding, message, details, "
                            "first_seen, last_seen, occurrences, pending_notice, delivered_sinks, "
                            "notify_attempts) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, '[]', 0)"
                        ),
                        (
                            str(uuid.uuid4()),
                            key,
                            f.severity,
                            f.crm,
                            f.asset,
                            f.finding,
                            f.message,
                            _json(f.details),
                            now,
                            now,
                            RAISED,
                        ),
                    )
                    outcome.raised.append(key)
                    continue
                escalates = SEVERITIES.index(f.severity) > SEVERITIES.index(existing.severity)
                if escalates and existing.pending_notice != RAISED:
                    cur.execute(
                        self._sql(
                            "UPDATE {table} SET pending_notice = ?, delivered_sinks = '[]' WHERE id = ?"
                        ),
                        (ESCALATED, existing.id),
                    )
                    outcome.escalated.append(key)
                cur.execute(
                    self._sql(
                        "UPDATE {table} SET last_seen = ?, occurrences = occurrences + 1, severity = ?, "
                        "finding = ?, message = ?, crm = ?, asset = ?, details = ? WHERE id = ?"
                    ),
                    (now, f.severity, f.finding, f.message, f.crm, f.asset, _json(f.details), existing.id),
                )
                outcome.repeated.append(key)
            for key, alert in open_alerts.items():
                if key not in current:
                    cur.execute(
                        self._sql(
                            "UPDATE {table} SET resolved_at = ?, pending_notice = ?, "
                            "delivered_sinks = '[]' WHERE id = ?"
                        ),
                        (now, RESOLVED, alert.id),
                    )
                    outcome.resolved.append(key)
        outcome.pending_notices = self.deliver(now)
        return outcome

    def resolve(self, key: str, now: datetime | None = None) -> bool:
        """Close the open alert of ``key`` by hand (a person fixed it); sends the resolution notice."""
        now = _utc(now) or datetime.now(UTC)
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            self._ensure(cur)
            cur.execute(self._sql("SELECT id FROM {table} WHERE key = ? AND resolved_at IS NULL"), (key,))
            rows = cur.fetchall()
            for (alert_id,) in rows:
                cur.execute(
                    self._sql(
                        "UPDATE {table} SET resolved_at = ?, pending_notice = ?, "
                        "delivered_sinks = '[]' WHERE id = ?"
                    ),
                    (now, RESOLVED, alert_id),
                )
        self.deliver(now)
        return bool(rows)

    def deliver(self, now: datetime | None = None) -> int:
        """Offer every pending notice to the sinks that have not taken it yet; returns how many remain."""
        pending = self._pending_notices()
        if not pending:
            return 0
        updates = []
        for alert, delivered in pending:
            notice = Notice(alert.pending_notice or RAISED, alert)
            errors = self._offer(notice, delivered)
            if errors:
                LOGGER.warning(
                    "alert %s: %s notice not delivered yet (%s); will retry",
                    alert.key,
                    notice.kind,
                    "; ".join(errors),
                )
            updates.append((alert.id, notice.kind, sorted(delivered), "; ".join(errors) or None))
        self._record_deliveries(updates, _utc(now) or datetime.now(UTC))
        return sum(1 for *_, error in updates if error is not None)

    def _pending_notices(self) -> list[tuple[Alert, set[str]]]:
        """Alerts with a notice to deliver, oldest first, each with the sinks that already took it."""
        if not self.warehouse.table_exists("ops", "alerts"):
            return []
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            cur.execute(
                self._sql(
                    "SELECT {columns}, delivered_sinks FROM {table} "
                    "WHERE pending_notice IS NOT NULL ORDER BY last_seen, id",
                    columns=_COLUMNS,
                )
            )
            return [(_alert(row[:-1]), set(json.loads(row[-1] or "[]"))) for row in cur.fetchall()]

    def _offer(self, notice: Notice, delivered: set[str]) -> list[str]:
        """Send ``notice`` to each sink not in ``delivered`` (adding those that take it); the errors."""
        errors = []
        for sink in self.sinks:
            if sink.name in delivered:
                continue
            try:
                sink.send(notice)
                delivered.add(sink.name)
            except AlertDeliveryError as exc:
                errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001
                # a broken sink must not lose the notice nor stop the others
                errors.append(f"{sink.name}: {type(exc).__name__}")
        return errors

    def _record_deliveries(
        self, updates: list[tuple[str, str, list[str], str | None]], stamp: datetime
    ) -> None:
        """Clear delivered notices; keep the others pending with the sinks that took them and the error."""
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            for alert_id, kind, delivered, error in updates:
                if error is None:
                    # only if nothing newer became pending meanwhile (another report in between)
                    cur.execute(
                        self._sql(
                            "UPDATE {table} SET pending_notice = NULL, delivered_sinks = '[]', "
                            "notified_at = ?, notify_error = NULL WHERE id = ? AND pending_notice = ?"
                        ),
                        (stamp, alert_id, kind),
                    )
                else:
                    cur.execute(
                        self._sql(
                            "UPDATE {table} SET delivered_sinks = ?, notify_attempts = notify_attempts + 1, "
                            "notify_error = ? WHERE id = ? AND pending_notice = ?"
                        ),
                        (json.dumps(delivered), error, alert_id, kind),
                    )

    def open_alerts(self, crm: str | None = None) -> list[Alert]:
        where, params = Fragment("resolved_at IS NULL"), ()
        if crm is not None:
            where, params = Fragment("resolved_at IS NULL AND crm = ?"), (crm,)
        return self._select(where, params)

    def alerts(self, key: str | None = None, limit: int = 100) -> list[Alert]:
        """Open and resolved alerts, newest first."""
        where, params = (Fragment("key = ?"), (key,)) if key else (Fragment("TRUE"), ())
        return self._select(where, (*params, int(limit)), Fragment("ORDER BY last_seen DESC, key LIMIT ?"))

    def _select(self, where: Fragment, params: tuple, order: Fragment = _OLDEST_FIRST) -> list[Alert]:
        if not self.warehouse.table_exists("ops", "alerts"):
            return []
        rows = self.warehouse.query(
            sql(
                "SELECT {columns} FROM {table} WHERE {where} {order}",
                columns=_COLUMNS,
                table=_TABLE,
                where=where,
                order=order,
            ),
            params,
        )
        return [_alert(row) for row in rows]
