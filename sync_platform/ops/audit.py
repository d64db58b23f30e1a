"""The audit trail: one row per sync step, CRM and entity in ``ops.audit_log``.

Written in its own short transaction, separate from the data it describes, so a failed or
blocked run is audited as surely as a good one. What it stores is redacted first: email
addresses and phone numbers in ``details`` are masked (values under a PII key too), and the
change samples of PII columns arrive as hashes (``sync_platform.canonical.changes``). An erasure
request masks whatever still names the person (:meth:`AuditLog.mask_subject`); retention
deletes entries older than ``audit.retention_days`` (:meth:`AuditLog.purge_older_than`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from sync_platform.core.sql import Fragment, ident, idents, join, placeholders, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.security.redaction import HASH_PATTERN, mask_value, pii_hash

DATASET, NAME = "ops", "audit_log"
TABLE = f"{DATASET}.{NAME}"
_TABLE = ident(DATASET, NAME)
STEPS = ("ingest", "canonical", "reconcile", "remediate", "retention", "erasure", "replay")
STATUSES = ("success", "failed", "blocked", "partial")
ERASED = "[erased]"
MIN_MASKED_CHARS = 3

COLUMNS: dict[str, pl.DataType] = {
    "id": pl.String(),
    "run_id": pl.String(),
    "step": pl.String(),
    "crm": pl.String(),
    "entity": pl.String(),
    "started_at": pl.Datetime("us", "UTC"),
    "ended_at": pl.Datetime("us", "UTC"),
    "records_read": pl.Int64(),
    "inserted": pl.Int64(),
    "updated": pl.Int64(),
    "deleted": pl.Int64(),
    "rejected": pl.Int64(),
    "changed_fields": pl.String(),
    "status": pl.String(),
    "error_class": pl.String(),
    "details": pl.String(),
}
_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id VARCHAR PRIMARY KEY,
    run_id VARCHAR,
    step VARCHAR NOT NULL,
    crm VARCHAR,
    entity VARCHAR NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    ended_at TIMESTAMP WITH TIME ZONE NOT NULL,
    records_read BIGINT NOT NULL,
    inserted BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    changed_fields VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    error_class VARCHAR,
    details VARCHAR NOT NULL
)"""


@dataclass
class AuditEntry:
    """One step's account of one entity: what it read and changed, and how it ended."""

    run_id: str | None
    step: str
    crm: str | None
    entity: str
    started_at: datetime
    ended_at: datetime
    records_read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    rejected: int = 0
    changed_fields: dict[str, int] = field(default_factory=dict)  # field -> rows whose value changed
    status: str = "success"  # success | failed | blocked | partial
    error_class: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # JSON; redacted before it is stored

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"audit status must be one of {', '.join(STATUSES)}, got {self.status!r}")


def redact_details(value: Any, key: str | None = None) -> Any:
    """``value`` made safe to store: strings masked (by their key when it names a PII column), hashes kept."""
    if isinstance(value, dict):
        return {str(k): redact_details(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_details(v, key) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value.isoformat() if isinstance(value, datetime | date) else str(value)
    return text if HASH_PATTERN.match(text) else mask_value(key, text)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class AuditLog:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def ensure(self) -> None:
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            cur.execute(sql("CREATE SCHEMA IF NOT EXISTS {schema}", schema=ident(DATASET)))
            cur.execute(_DDL)
            cur.execute(
                sql("CREATE INDEX IF NOT EXISTS audit_log_ended_at ON {table} (ended_at)", table=_TABLE)
            )

    def record(self, *entries: AuditEntry) -> None:
        """Store entries in one transaction of their own (creating the table on first use)."""
        if not entries:
            return
        self.ensure()
        rows = [
            (
                str(uuid.uuid4()),
                e.run_id,
                e.step,
                e.crm,
                e.entity,
                _utc(e.started_at),
                _utc(e.ended_at),
                int(e.records_read),
                int(e.inserted),
                int(e.updated),
                int(e.deleted),
                int(e.rejected),
                json.dumps({str(k): int(v) for k, v in sorted(e.changed_fields.items())}),
                e.status,
                redact_details(e.error_class),
                json.dumps(redact_details(e.details), sort_keys=True, default=str),
            )
            for e in entries
        ]
        values = placeholders(len(COLUMNS), self.warehouse.placeholder)
        statement = sql(
            "INSERT INTO {table} ({columns}) VALUES ({values})",
            table=_TABLE,
            columns=idents(COLUMNS),
            values=values,
        )
        with self.warehouse.connect() as conn:
            conn.cursor().executemany(statement, rows)

    def entries(
        self, step: str | None = None, crm: str | None = None, entity: str | None = None, limit: int = 100
    ) -> pl.DataFrame:
        """The newest entries first, optionally of one step, CRM and entity."""
        if not self.warehouse.table_exists(DATASET, NAME):
            return pl.DataFrame(schema=COLUMNS)
        filters = [(c, v) for c, v in (("step", step), ("crm", crm), ("entity", entity)) if v is not None]
        where = join([sql("{c} = ?", c=ident(c)) for c, _ in filters], " AND ") or Fragment("TRUE")
        rows = self.warehouse.query(
            sql(
                "SELECT {columns} FROM {table} WHERE {where} "
                "ORDER BY started_at DESC, ended_at DESC, id LIMIT ?",
                columns=idents(COLUMNS),
                table=_TABLE,
                where=where,
            ),
            (*(v for _, v in filters), int(limit)),
        )
        return pl.DataFrame(
            [tuple(_utc(v) if isinstance(v, datetime) else v for v in row) for row in rows],
            schema=COLUMNS,
            orient="row",
        )

    def purge_older_than(self, days: int, now: datetime | None = None) -> int:
        """Delete entries that ended more than ``days`` ago; returns how many."""
        if days < 1:
            raise ValueError(f"retention must be at least one day, got {days}")
        if not self.warehouse.table_exists(DATASET, NAME):
            return 0
        cutoff = _utc(now or datetime.now(UTC)) - timedelta(days=days)
        p = placeholders(1, self.warehouse.placeholder)
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            cur.execute(
                sql("SELECT count(*) FROM {table} WHERE ended_at < {p}", table=_TABLE, p=p), (cutoff,)
            )
            purged = int(cur.fetchone()[0])
            if purged:
                cur.execute(sql("DELETE FROM {table} WHERE ended_at < {p}", table=_TABLE, p=p), (cutoff,))
        return purged

    def mask_subject(self, values: Sequence[str]) -> int:
        """Erasure: replace every occurrence of ``values`` (and of their hashes) in ``details`` and
        ``changed_fields`` with ``[erased]``; returns how many entries changed.

        Pass the values as the canonical model holds them (normalized email, E.164 phone, names,
        source ids): the change samples hash exactly those.
        """
        # longest first, so a value inside another is masked whole; very short ones would tear the JSON
        needles = sorted(
            {
                n
                for v in values
                if v and len(str(v)) >= MIN_MASKED_CHARS
                for n in (str(v), json.dumps(str(v))[1:-1], pii_hash(v))
                if n
            },
            key=len,
            reverse=True,
        )
        if not needles or not self.warehouse.table_exists(DATASET, NAME):
            return 0
        p = placeholders(1, self.warehouse.placeholder)
        contains = sql("strpos(details, {p}) > 0 OR strpos(changed_fields, {p}) > 0", p=p)
        hit = join([contains] * len(needles), " OR ")
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            cur.execute(
                sql("SELECT id FROM {table} WHERE {hit}", table=_TABLE, hit=hit),
                tuple(n for n in needles for _ in (0, 1)),
            )
            ids = [row[0] for row in cur.fetchall()]
            for needle in needles:
                cur.execute(
                    sql(
                        "UPDATE {table} SET details = replace(details, {p}, {p}), "
                        "changed_fields = replace(changed_fields, {p}, {p}) WHERE {contains}",
                        table=_TABLE,
                        p=p,
                        contains=contains,
                    ),
                    (needle, ERASED, needle, ERASED, needle, needle),
                )
        return len(ids)
