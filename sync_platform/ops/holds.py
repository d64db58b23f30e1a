"""Holds: "do not publish this entity until a person has looked", placed by a monitor, released by a person.

A CRM-side mass change (a bad import in the CRM rewrote one field in a third of the records) is
loaded faithfully into the raw tables: that is the mirror's job. What must not happen is that it
spreads downstream before anyone looked. The ingestion step places a hold on the canonical entity
the object feeds; every canonical build of that entity is blocked while a hold is open; a person
releases it (``sync-platform hold release ID --reason ...``), audited, after which the next build
publishes. One row per hold in ``ops.holds``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync_platform.core.sql import Fragment, ident, idents, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.approvals import who

_TABLE = ident("ops", "holds")
_DDL = sql(
    "CREATE TABLE IF NOT EXISTS {table} (id VARCHAR PRIMARY KEY, entity VARCHAR NOT NULL, "
    "reason VARCHAR NOT NULL, details VARCHAR, placed_by_run VARCHAR, placed_at TIMESTAMPTZ NOT NULL, "
    "released_by VARCHAR, released_at TIMESTAMPTZ, release_reason VARCHAR)",
    table=_TABLE,
)
_COLUMNS = idents(
    (
        "id",
        "entity",
        "reason",
        "details",
        "placed_by_run",
        "placed_at",
        "released_by",
        "released_at",
        "release_reason",
    )
)


class UnknownHold(LookupError):
    """No open hold has this id."""


@dataclass(frozen=True)
class Hold:
    id: str
    entity: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    placed_by_run: str | None = None
    placed_at: datetime | None = None
    released_by: str | None = None
    released_at: datetime | None = None
    release_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.released_at is None


class Holds:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def ensure(self) -> None:
        self.warehouse.query("CREATE SCHEMA IF NOT EXISTS ops")
        self.warehouse.query(_DDL)

    def place(self, entity: str, reason: str, details: dict[str, Any], run_id: str | None) -> Hold:
        """Hold ``entity``; an entity already held gets no second hold (the open one stands)."""
        existing = self.open(entity)
        if existing:
            return existing[0]
        self.ensure()
        hold = Hold(uuid.uuid4().hex[:12], entity, reason, details, run_id, datetime.now(UTC))
        self.warehouse.query(
            sql(
                "INSERT INTO {table} (id, entity, reason, details, placed_by_run, placed_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                table=_TABLE,
            ),
            (
                hold.id,
                entity,
                reason,
                json.dumps(details, default=str, sort_keys=True),
                run_id,
                hold.placed_at,
            ),
        )
        return hold

    def open(self, entity: str | None = None) -> list[Hold]:
        return [h for h in self.list(entity) if h.is_open]

    def list(self, entity: str | None = None, limit: int = 100) -> list[Hold]:
        """Holds, newest first."""
        if not self.warehouse.table_exists("ops", "holds"):
            return []
        where = Fragment("WHERE entity = ?" if entity else "")
        rows = self.warehouse.query(
            sql(
                "SELECT {columns} FROM {table} {where} ORDER BY placed_at DESC LIMIT ?",
                columns=_COLUMNS,
                table=_TABLE,
                where=where,
            ),
            (*([entity] if entity else []), int(limit)),
        )
        return [Hold(r[0], r[1], r[2], json.loads(r[3]) if r[3] else {}, *r[4:]) for r in rows]

    def release(self, hold_id: str, reason: str, by: str | None = None) -> Hold:
        """Release an open hold, with who and why; the entity's next build may publish."""
        if not reason.strip():
            raise ValueError("a release needs a reason")
        found = [h for h in self.open() if h.id == hold_id]
        if not found:
            raise UnknownHold(f"no open hold {hold_id!r} (see `sync-platform hold list`)")
        now, by = datetime.now(UTC), by or who()
        self.warehouse.query(
            sql(
                "UPDATE {table} SET released_by = ?, released_at = ?, release_reason = ? WHERE id = ?",
                table=_TABLE,
            ),
            (by, now, reason.strip(), hold_id),
        )
        held = found[0]
        return Hold(
            **{**held.__dict__, "released_by": by, "released_at": now, "release_reason": reason.strip()}
        )
