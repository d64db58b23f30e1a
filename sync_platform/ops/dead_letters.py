"""The dead-letter queue: CRM requests or records that failed for good, kept with the reason.

Two grains:
- a *request* that failed for good (kinds auth, rate_limit, timeout, server_error, ...) stops
  the run; the entry is written in its own transaction (the failed dlt load writes nothing), so
  it is never lost. Replay re-runs the CRM's sync from its unchanged cursor.
- a *record* that cannot be loaded (kind ``parse`` or ``validation``) is left out of its page
  and the run loads the rest; the entry carries ``record_id`` and a ``payload_ref`` into
  ``ops.dead_letter_payloads``, where the record is kept **redacted** (emails, phones and names
  masked: it is for diagnosis, replay re-fetches the record by id). A record rejected again
  while pending bumps its entry's ``attempts`` instead of adding one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync_platform.core.errors import CrmRequestError, ErrorKind, RejectedRecord
from sync_platform.core.sql import Fragment, ident, placeholders, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.security.redaction import mask_value

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
_PAYLOAD_DDL = """
CREATE TABLE IF NOT EXISTS ops.dead_letter_payloads (
    id VARCHAR PRIMARY KEY,
    crm VARCHAR NOT NULL,
    object VARCHAR NOT NULL,
    record_id VARCHAR,
    payload VARCHAR NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL
)"""
PAYLOADS = "ops.dead_letter_payloads"
_TABLE, _PAYLOADS = ident(*TABLE.split(".")), ident(*PAYLOADS.split("."))
RECORD_KINDS = (ErrorKind.PARSE.value, ErrorKind.VALIDATION.value)
_PII_KEYS = {
    "email": ("email",),
    "phone": ("phone", "telephone", "mobile", "fax"),
    "name": ("firstname", "lastname", "fullname", "first_name", "last_name", "full_name", "middlename"),
}


OUTBOUND = "outbound"  # kind of a change a CRM refused to take (write-back); record_id is the change id


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
    record_id: str | None = None

    @property
    def is_record(self) -> bool:
        return self.record_id is not None

    @property
    def is_outbound(self) -> bool:
        return self.kind == OUTBOUND


def redact_payload(value: Any, key: str = "") -> Any:
    """A record as it may be stored outside the raw tables: PII fields masked, free text scrubbed."""
    if isinstance(value, Mapping):
        return {k: redact_payload(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_payload(v, key) for v in value]
    if not isinstance(value, str):
        return value  # numbers, flags and nulls identify nobody
    lowered = key.lower()
    kind = next((k for k, parts in _PII_KEYS.items() if any(p in lowered for p in parts)), None)
    if lowered == "name" or (kind == "name" and not lowered.startswith(("has", "do", "is"))):
        return mask_value("name", value)
    # mask what looks like an email or a phone (a flag like HasOptedOutOfEmail holds neither); scrub the rest
    looks_like = (kind == "email" and "@" in value) or (
        kind == "phone" and sum(c.isdigit() for c in value) >= 6
    )
    return mask_value(kind if looks_like else None, value)


class DeadLetterQueue:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def ensure(self) -> None:
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            cur.execute("CREATE SCHEMA IF NOT EXISTS ops")
            cur.execute(_DDL)
            cur.execute("ALTER TABLE ops.dead_letters ADD COLUMN IF NOT EXISTS record_id VARCHAR")
            cur.execute(_PAYLOAD_DDL)

    def add_failure(
        self, exc: CrmRequestError, objects: list[str], run_id: str | None, payload_ref: str | None = None
    ) -> list[str]:
        """Record a failed request against every object of the run it stopped."""
        self.ensure()
        now = datetime.now(UTC)
        ids = []
        rows = []
        for obj in objects:
            entry_id = str(uuid.uuid4())
            ids.append(entry_id)
            rows.append(
                (
                    entry_id,
                    exc.crm,
                    obj,
                    exc.kind.value,
                    exc.status,
                    f"{exc.method} {exc.path}".strip() or None,
                    payload_ref,
                    exc.attempts,
                    str(exc),
                    run_id,
                    now,
                )
            )
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            cur.executemany(
                sql(
                    "INSERT INTO {table} (id, crm, object, kind, http_status, request, payload_ref, "
                    "attempts, error, run_id, created_at) VALUES ({values})",
                    table=_TABLE,
                    values=placeholders(11, self.warehouse.placeholder),
                ),
                rows,
            )
        return ids

    def add_records(
        self, crm: str, obj: str, rejects: Sequence[RejectedRecord], run_id: str | None
    ) -> list[str]:
        """Record-level dead letters for records left out of a load; returns their entry ids.

        A record already pending is not added twice: its entry's attempts go up, and its error,
        run id and stored payload are those of the newest rejection.
        """
        if not rejects:
            return []
        self.ensure()
        now = datetime.now(UTC)
        p = placeholders(1, self.warehouse.placeholder)
        pending = {r.record_id: r for r in self.pending(crm) if r.object == obj and r.record_id is not None}
        ids = []
        with self.warehouse.connect() as conn:
            cur = conn.cursor()
            for reject in rejects:
                record_id = reject.record_id or f"unidentified:{uuid.uuid4()}"  # validation: no id to key on
                payload = json.dumps(redact_payload(reject.payload), default=str, sort_keys=True)
                error = (
                    f"{crm} {obj} change {record_id} not written: {reject.reason}"
                    if reject.kind == OUTBOUND
                    else f"{crm} {obj} record {record_id} not loaded ({reject.kind}): {reject.reason}"
                )
                existing = pending.get(record_id)
                if existing is not None:
                    cur.execute(
                        sql(
                            "UPDATE {table} SET attempts = attempts + 1, error = {p}, run_id = {p}, "
                            "kind = {p} WHERE id = {p}",
                            table=_TABLE,
                            p=p,
                        ),
                        (error, run_id, reject.kind, existing.id),
                    )
                    if existing.payload_ref:
                        cur.execute(
                            sql(
                                "UPDATE {table} SET payload = {p}, created_at = {p} WHERE id = {p}",
                                table=_PAYLOADS,
                                p=p,
                            ),
                            (payload, now, existing.payload_ref),
                        )
                    ids.append(existing.id)
                    continue
                entry_id, payload_ref = str(uuid.uuid4()), str(uuid.uuid4())
                cur.execute(
                    sql(
                        "INSERT INTO {table} (id, crm, object, record_id, payload, created_at) "
                        "VALUES ({values})",
                        table=_PAYLOADS,
                        values=placeholders(6, self.warehouse.placeholder),
                    ),
                    (payload_ref, crm, obj, record_id, payload, now),
                )
                cur.execute(
                    sql(
                        "INSERT INTO {table} (id, crm, object, kind, http_status, request, payload_ref, "
                        "attempts, error, run_id, created_at, record_id) VALUES ({values})",
                        table=_TABLE,
                        values=placeholders(12, self.warehouse.placeholder),
                    ),
                    (
                        entry_id,
                        crm,
                        obj,
                        reject.kind,
                        None,
                        f"record {record_id}",
                        payload_ref,
                        1,
                        error,
                        run_id,
                        now,
                        record_id,
                    ),
                )
                pending[record_id] = DeadLetter(
                    entry_id,
                    crm,
                    obj,
                    reject.kind,
                    None,
                    None,
                    payload_ref,
                    1,
                    error,
                    run_id,
                    now,
                    None,
                    record_id,
                )
                ids.append(entry_id)
        return ids

    def payload(self, payload_ref: str) -> dict | None:
        """The stored (redacted) record of a record-level dead letter."""
        if not self.warehouse.table_exists("ops", "dead_letter_payloads"):
            return None
        rows = self.warehouse.query(
            sql("SELECT payload FROM {table} WHERE id = ?", table=_PAYLOADS), (payload_ref,)
        )
        return json.loads(rows[0][0]) if rows else None

    def pending(self, crm: str | None = None) -> list[DeadLetter]:
        return self._select(Fragment("replayed_at IS NULL"), crm)

    def all(self, crm: str | None = None) -> list[DeadLetter]:
        return self._select(Fragment("TRUE"), crm)

    def _select(self, where: Fragment, crm: str | None) -> list[DeadLetter]:
        if not self.warehouse.table_exists("ops", "dead_letters"):
            return []
        params: tuple = ()
        if crm:
            where, params = sql("{where} AND crm = ?", where=where), (crm,)
        record_id = Fragment("record_id" if self._has_record_id() else "NULL")
        rows = self.warehouse.query(
            sql(
                "SELECT id, crm, object, kind, http_status, request, payload_ref, attempts, error, run_id, "
                "created_at, replayed_at, {record_id} FROM {table} WHERE {where} ORDER BY created_at, id",
                record_id=record_id,
                table=_TABLE,
                where=where,
            ),
            params,
        )
        return [DeadLetter(*row) for row in rows]

    def _has_record_id(self) -> bool:
        """Tables made before record-level dead letters lack the column until the next write adds it."""
        rows = self.warehouse.query(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'ops' "
            "AND table_name = 'dead_letters' AND column_name = 'record_id'"
        )
        return bool(rows[0][0])

    def depth(self, crm: str | None = None) -> int:
        return len(self.pending(crm))

    def mark_replayed(self, ids: list[str], run_id: str | None) -> None:
        if not ids:
            return
        with self.warehouse.connect() as conn:
            conn.cursor().executemany(
                sql(
                    "UPDATE {table} SET replayed_at = {p}, replay_run_id = {p} WHERE id = {p}",
                    table=_TABLE,
                    p=placeholders(1, self.warehouse.placeholder),
                ),
                [(datetime.now(UTC), run_id, i) for i in ids],
            )
