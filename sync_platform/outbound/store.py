"""The two write-back tables: what the support system asks for, and what each CRM answered.

``outbound.changes`` is the support system's inbox: it inserts one row per change, with a
``change_id`` it chooses (its idempotency key). Rows repeating a ``change_id`` are the same change
delivered again (a retry, a trigger firing three times): the earliest row counts, the others are
ignored (and counted, and reported when their fields differ).

``outbound.deliveries`` holds one final row per change and CRM: ``written`` (with the CRM's record
id and whether it created it) or ``refused`` (with the reason: a field no mapping can write, a
value the CRM rejected). A change with no final row for a CRM it targets is still pending; a run
that died after the CRM answered and before this table was written sends it again, which is safe
because every write is idempotent (an update sets the same values; a create is an upsert by a key
derived from the ``change_id``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync_platform.core.sql import ident, placeholders, sql
from sync_platform.core.warehouse import Warehouse

SCHEMA = "outbound"
CHANGES = ident(SCHEMA, "changes")
DELIVERIES = ident(SCHEMA, "deliveries")
ENTITIES = ("contact", "account", "interaction")
WRITTEN, REFUSED = "written", "refused"

_DDL = (
    sql(
        "CREATE TABLE IF NOT EXISTS {table} (change_id VARCHAR NOT NULL, entity VARCHAR NOT NULL, "
        "target VARCHAR, fields VARCHAR NOT NULL, requested_at TIMESTAMPTZ NOT NULL, requested_by VARCHAR)",
        table=CHANGES,
    ),
    sql(
        "CREATE TABLE IF NOT EXISTS {table} (delivery_id VARCHAR PRIMARY KEY, change_id VARCHAR NOT NULL, "
        "crm VARCHAR NOT NULL, crm_object VARCHAR, record_id VARCHAR, status VARCHAR NOT NULL, "
        "created BOOLEAN, http_status INTEGER, error VARCHAR, crm_fields VARCHAR, run_id VARCHAR, "
        "delivered_at TIMESTAMPTZ NOT NULL)",
        table=DELIVERIES,
    ),
)


@dataclass(frozen=True)
class Change:
    change_id: str
    entity: str  # contact | account | interaction
    target: str | None  # a golden id (cus_..., acc_...), "<crm>:<record id>", or None to create
    fields: dict[str, Any]  # canonical field name -> value
    requested_at: datetime
    requested_by: str | None = None


@dataclass(frozen=True)
class Delivery:
    change_id: str
    crm: str
    status: str  # written | refused
    crm_object: str | None = None
    record_id: str | None = None
    created: bool | None = None
    http_status: int | None = None
    error: str | None = None
    crm_fields: tuple[str, ...] = ()  # names only: the values are the customer's

    @property
    def delivery_id(self) -> str:
        return f"{self.change_id}:{self.crm}"


def validate_change(entity: str, target: str | None, fields: object) -> None:
    """A change the platform can act on, or a ValueError saying why not (the CLI's and the reader's check)."""
    if entity not in ENTITIES:
        raise ValueError(f"entity must be one of {', '.join(ENTITIES)}, not {entity!r}")
    if not isinstance(fields, dict) or not fields:
        raise ValueError("fields must be a non-empty JSON object of canonical field names to values")
    if target is not None and not target.strip():
        raise ValueError("target must be a golden id, <crm>:<record id>, or absent for a create")


class OutboundStore:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def ensure(self) -> None:
        with self.warehouse.session():
            self.warehouse.query(sql("CREATE SCHEMA IF NOT EXISTS {s}", s=ident(SCHEMA)))
            for statement in _DDL:
                self.warehouse.query(statement)

    def put(
        self,
        entity: str,
        fields: dict[str, Any],
        target: str | None = None,
        change_id: str | None = None,
        requested_by: str | None = None,
    ) -> Change:
        """Insert a change as the support system would (``sync-platform outbound put``)."""
        validate_change(entity, target, fields)
        change = Change(
            change_id or uuid.uuid4().hex, entity, target, fields, datetime.now(UTC), requested_by
        )
        self.ensure()
        self.warehouse.query(
            sql(
                "INSERT INTO {table} (change_id, entity, target, fields, requested_at, requested_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                table=CHANGES,
            ),
            (
                change.change_id,
                entity,
                target,
                json.dumps(fields, default=str, sort_keys=True),
                change.requested_at,
                requested_by,
            ),
        )
        return change

    def changes(self) -> tuple[list[Change], dict[str, int]]:
        """Every change once (its earliest row), oldest first; and per change_id the repeats ignored."""
        rows = self.warehouse.query(
            sql(
                "SELECT change_id, entity, target, fields, requested_at, requested_by FROM {table} "
                "ORDER BY requested_at, change_id",
                table=CHANGES,
            )
        )
        seen: dict[str, Change] = {}
        repeats: dict[str, int] = {}
        for change_id, entity, target, fields, at, by in rows:
            if change_id in seen:
                repeats[change_id] = repeats.get(change_id, 0) + 1
                continue
            seen[change_id] = Change(change_id, entity, target, _fields(fields), at, by)
        return list(seen.values()), repeats

    def delivered(self) -> dict[tuple[str, str], Delivery]:
        """The final answer per (change_id, crm)."""
        rows = self.warehouse.query(
            sql(
                "SELECT change_id, crm, status, crm_object, record_id, created, http_status, error, "
                "crm_fields FROM {table}",
                table=DELIVERIES,
            )
        )
        return {
            (r[0], r[1]): Delivery(*r[:8], tuple(json.loads(r[8] or "[]")))  # type: ignore[arg-type]
            for r in rows
        }

    def record(self, deliveries: Iterable[Delivery], run_id: str) -> int:
        """Keep final answers; one transaction, so a crash keeps all of them or none."""
        rows = [
            (
                d.delivery_id,
                d.change_id,
                d.crm,
                d.crm_object,
                d.record_id,
                d.status,
                d.created,
                d.http_status,
                d.error,
                json.dumps(list(d.crm_fields)),
                run_id,
                datetime.now(UTC),
            )
            for d in deliveries
        ]
        if not rows:
            return 0
        statement = sql(
            "INSERT INTO {table} (delivery_id, change_id, crm, crm_object, record_id, status, created, "
            "http_status, error, crm_fields, run_id, delivered_at) VALUES ({values})",
            table=DELIVERIES,
            values=placeholders(12, self.warehouse.placeholder),
        )
        with self.warehouse.connect() as conn:
            conn.cursor().executemany(statement, rows)
        return len(rows)

    def status(self) -> list[tuple[str, str, str, int]]:
        """(entity, crm, status, count) over every change, pending included."""
        changes, _ = self.changes()
        delivered = self.delivered()
        entity = {c.change_id: c.entity for c in changes}
        counts: dict[tuple[str, str, str], int] = {}
        for (change_id, crm), d in delivered.items():
            key = (entity.get(change_id, "?"), crm, d.status)
            counts[key] = counts.get(key, 0) + 1
        return sorted((*k, n) for k, n in counts.items())


def _fields(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def pending_count(changes: Sequence[Change], delivered: dict[tuple[str, str], Delivery]) -> int:
    """Changes with no final answer from any CRM yet (the rest may still wait for one CRM)."""
    answered = {change_id for change_id, _ in delivered}
    return sum(1 for c in changes if c.change_id not in answered)
