"""The dead-letter queue: CRM requests or records that failed for good, kept with the reason.

Written in its own transaction (the failed dlt load writes nothing), so a failure is never
lost even though the run fails. Replay re-drives an entry by re-running the sync of its CRM
object from the unchanged cursor (merge keeps it idempotent) and marks it replayed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from .sources.errors import CrmRequestError
from .warehouse import Warehouse

TABLE = "ops.dead_letters"
_DDL = """
CREATE TABLE IF NOT EXISTS ops.dead_letters (
    id VARCHAR PRIMARY KEY,
    crm VARCHAR NOT NULL,
    object VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    http_status INTEGER,
    request VARCHAR,
    payload_ref VARCHAR,
    attempts INTEGER NOT NULL,
    error VARCHAR NOT NULL,
    run_id VARCHAR,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    replayed_at TIMESTAMP WITH TIME ZONE,
    replay_run_id VARCHAR
)"""


@dataclass(frozen=True)
class DeadLetter:
    id: str
    crm: str
    object: str
    kind: str
    http_status: int | None
    request: str | None
    payload_ref: str | None
    attempts: int
    error: str
    run_id: str | None
    created_at: datetime
    replayed_at: datetime | None


class DeadLetterQueue:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def ensure(self) -> None:
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            cur.execute("CREATE SCHEMA IF NOT EXISTS ops")
            cur.execute(_DDL)

    def add_failure(self, exc: CrmRequestError, objects: list[str], run_id: str | None,
                    payload_ref: str | None = None) -> list[str]:
        """Record a failed request against every object of the run it stopped."""
        self.ensure()
        now = datetime.now(UTC)
        ids = []
        rows = []
        for obj in objects:
            entry_id = str(uuid.uuid4())
            ids.append(entry_id)
            rows.append((entry_id, exc.crm, obj, exc.kind.value, exc.status,
                         f"{exc.method} {exc.path}".strip() or None, payload_ref, exc.attempts, str(exc), run_id, now))
        p = self.warehouse.placeholder
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            cur.executemany(
                f"INSERT INTO {TABLE} (id, crm, object, kind, http_status, request, payload_ref, attempts, error, "
                f"run_id, created_at) VALUES ({', '.join([p] * 11)})", rows)
        return ids

    def pending(self, crm: str | None = None) -> list[DeadLetter]:
        return self._select("replayed_at IS NULL", crm)

    def all(self, crm: str | None = None) -> list[DeadLetter]:
        return self._select("TRUE", crm)

    def _select(self, where: str, crm: str | None) -> list[DeadLetter]:
        if not self.warehouse.table_exists("ops", "dead_letters"):
            return []
        params: tuple = ()
        if crm:
            where += " AND crm = ?"
            params = (crm,)
        rows = self.warehouse.query(
            f"SELECT id, crm, object, kind, http_status, request, payload_ref, attempts, error, run_id, created_at, "
            f"replayed_at FROM {TABLE} WHERE {where} ORDER BY created_at, id", params)
        return [DeadLetter(*row) for row in rows]

    def depth(self, crm: str | None = None) -> int:
        return len(self.pending(crm))

    def mark_replayed(self, ids: list[str], run_id: str | None) -> None:
        if not ids:
            return
        p = self.warehouse.placeholder
        with self.warehouse.connect() as conn:
            conn.cursor().executemany(
                f"UPDATE {TABLE} SET replayed_at = {p}, replay_run_id = {p} WHERE id = {p}",
                [(datetime.now(UTC), run_id, i) for i in ids])
