"""Approvals: a person's explicit, audited "yes, publish it anyway", used once.

A gate that blocks (the change-impact gate of a canonical build, later a held mass change) names
its scope, e.g. ``canonical:contact``. A person grants an approval for that scope with a reason
(``sync-platform canonical approve contact --reason ...``); the next run the gate would block
consumes it, publishes, and records which approval let it through. An approval nobody needed
stays open; a second block needs a second approval. One row per approval in ``ops.approvals``.
"""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sync_platform.core.sql import Fragment, ident, idents, sql
from sync_platform.core.warehouse import Warehouse

_TABLE = ident("ops", "approvals")
_DDL = sql(
    "CREATE TABLE IF NOT EXISTS {table} (id VARCHAR PRIMARY KEY, scope VARCHAR NOT NULL, "
    "reason VARCHAR NOT NULL, approved_by VARCHAR NOT NULL, approved_at TIMESTAMPTZ NOT NULL, "
    "used_by_run VARCHAR, used_at TIMESTAMPTZ)",
    table=_TABLE,
)
_COLUMNS = idents(("id", "scope", "reason", "approved_by", "approved_at", "used_by_run", "used_at"))


@dataclass(frozen=True)
class Approval:
    id: str
    scope: str
    reason: str
    approved_by: str
    approved_at: datetime
    used_by_run: str | None = None
    used_at: datetime | None = None


class Approvals:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def ensure(self) -> None:
        self.warehouse.query("CREATE SCHEMA IF NOT EXISTS ops")
        self.warehouse.query(_DDL)

    def grant(self, scope: str, reason: str, approved_by: str | None = None) -> Approval:
        """Record an approval; a reason is required (it is what the audit trail is for)."""
        if not reason.strip():
            raise ValueError("an approval needs a reason")
        self.ensure()
        approval = Approval(
            uuid.uuid4().hex[:12], scope, reason.strip(), approved_by or who(), datetime.now(UTC)
        )
        self.warehouse.query(
            sql(
                "INSERT INTO {table} (id, scope, reason, approved_by, approved_at) VALUES (?, ?, ?, ?, ?)",
                table=_TABLE,
            ),
            (approval.id, approval.scope, approval.reason, approval.approved_by, approval.approved_at),
        )
        return approval

    def open(self, scope: str) -> Approval | None:
        """The oldest unused approval of ``scope``."""
        if not self.warehouse.table_exists("ops", "approvals"):
            return None
        rows = self.warehouse.query(
            sql(
                "SELECT {columns} FROM {table} WHERE scope = ? AND used_by_run IS NULL "
                "ORDER BY approved_at LIMIT 1",
                table=_TABLE,
                columns=_COLUMNS,
            ),
            (scope,),
        )
        return Approval(*rows[0]) if rows else None

    def latest(self, scope: str) -> Approval | None:
        """The newest approval of ``scope``, used or not (one that stands, like a mapping version's)."""
        if not self.warehouse.table_exists("ops", "approvals"):
            return None
        rows = self.warehouse.query(
            sql(
                "SELECT {columns} FROM {table} WHERE scope = ? ORDER BY approved_at DESC LIMIT 1",
                table=_TABLE,
                columns=_COLUMNS,
            ),
            (scope,),
        )
        return Approval(*rows[0]) if rows else None

    def ever(self, scope: str) -> bool:
        """Whether ``scope`` was ever approved (used or not)."""
        if not self.warehouse.table_exists("ops", "approvals"):
            return False
        rows = self.warehouse.query(
            sql("SELECT count(*) FROM {table} WHERE scope = ?", table=_TABLE), (scope,)
        )
        return bool(rows[0][0])

    def use(self, approval: Approval, run_id: str) -> Approval:
        """Mark ``approval`` used by ``run_id``; it lets no other run through."""
        now = datetime.now(UTC)
        self.warehouse.query(
            sql(
                "UPDATE {table} SET used_by_run = ?, used_at = ? WHERE id = ? AND used_by_run IS NULL",
                table=_TABLE,
            ),
            (run_id, now, approval.id),
        )
        return Approval(**{**approval.__dict__, "used_by_run": run_id, "used_at": now})

    def history(self, scope: str | None = None, limit: int = 50) -> list[Approval]:
        if not self.warehouse.table_exists("ops", "approvals"):
            return []
        where = Fragment("WHERE scope = ?" if scope else "")
        rows = self.warehouse.query(
            sql(
                "SELECT {columns} FROM {table} {where} ORDER BY approved_at DESC LIMIT ?",
                table=_TABLE,
                columns=_COLUMNS,
                where=where,
            ),
            (*([scope] if scope else []), int(limit)),
        )
        return [Approval(*r) for r in rows]


def who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"
