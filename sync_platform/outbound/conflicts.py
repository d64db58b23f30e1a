"""Conflicts between a CRM's change and an outbound change, settled before anything is written.

A **conflict** is a field changed in the CRM and in an outbound change since the value both last
agreed on. The base is what the support system saw when it asked: the raw record's version kept
before the change's ``requested_at`` (``RawHistory.as_of``, one query for all the records). The
CRM's value is the raw record now; the CRM's change time is its cursor stamp.

Per field of a planned update:

- the CRM already holds the value asked for: nothing to write for that field;
- the CRM's value still equals the base (only our side changed it): written;
- both changed (a conflict): the strategy of that CRM, entity and field (``outbound.conflicts`` in
  ``data/sync.yaml``) settles it: ``last_write_wins`` (the CRM's value stays when its change time
  is later than the request by more than ``skew_seconds``), ``field_merge`` (the preferred side
  wins the field; fields changed on one side only merge), ``manual_review`` (nothing is written to
  that record until a person decides: ``sync-platform outbound conflicts``).

Every conflict is kept in ``outbound.conflicts`` with its base, CRM and outbound values and the
decision (``auto`` when a strategy settled it, ``open`` until a person does, ``resolved`` after),
so "why did the CRM keep its value" has an answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sync_platform.canonical.mapping.loader import Mapping
from sync_platform.core.config import ConflictConfig
from sync_platform.core.sql import ident, placeholders, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.history import RECORDED_AT, RawHistory
from sync_platform.ingest.raw_schema import RAW_TABLES, raw_column
from sync_platform.ops.audit import AuditEntry, AuditLog
from sync_platform.ops.echoes import as_text
from sync_platform.outbound.plan import Planned
from sync_platform.outbound.store import SCHEMA, WRITTEN, Change, Delivery

CONFLICTS = ident(SCHEMA, "conflicts")
OPEN, AUTO, RESOLVED = "open", "auto", "resolved"
TAKE_CRM, TAKE_OURS, EDIT = "crm", "ours", "edit"
_DDL = sql(
    "CREATE TABLE IF NOT EXISTS {table} (conflict_id VARCHAR PRIMARY KEY, change_id VARCHAR NOT NULL, "
    "crm VARCHAR NOT NULL, crm_object VARCHAR, record_id VARCHAR, entity VARCHAR, fields VARCHAR NOT NULL, "
    "status VARCHAR NOT NULL, decision VARCHAR, decided_by VARCHAR, decided_at TIMESTAMPTZ, "
    "detected_at TIMESTAMPTZ NOT NULL)",
    table=CONFLICTS,
)


@dataclass(frozen=True)
class FieldConflict:
    field: str  # canonical name
    crm_field: str
    base: Any
    crm: Any
    ours: Any
    crm_changed_at: str | None
    strategy: str
    outcome: str  # ours | crm | review


@dataclass(frozen=True)
class Conflict:
    change_id: str
    crm: str
    crm_object: str
    record_id: str
    entity: str
    fields: tuple[FieldConflict, ...]
    status: str  # open | auto | resolved
    decision: dict[str, Any] | None = None  # resolved: {"take": crm|ours|edit, "values": {crm field: value}}
    decided_by: str | None = None

    @property
    def conflict_id(self) -> str:
        return f"{self.change_id}:{self.crm}"


@dataclass
class Screened:
    send: list[Planned] = field(default_factory=list)
    settled: list[Delivery] = field(default_factory=list)  # final without a call: nothing left to write
    held: list[Conflict] = field(default_factory=list)  # waiting for a person
    detected: list[Conflict] = field(default_factory=list)  # new this pass (auto and open)


class ConflictBook:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def ensure(self) -> None:
        self.warehouse.query(sql("CREATE SCHEMA IF NOT EXISTS {s}", s=ident(SCHEMA)))
        self.warehouse.query(_DDL)

    def add(self, conflicts: Sequence[Conflict]) -> None:
        if not conflicts:
            return
        statement = sql(
            "INSERT INTO {table} (conflict_id, change_id, crm, crm_object, record_id, entity, fields, "
            "status, decision, decided_by, decided_at, detected_at) VALUES ({values}) "
            "ON CONFLICT (conflict_id) DO NOTHING",
            table=CONFLICTS,
            values=placeholders(12, self.warehouse.placeholder),
        )
        now = datetime.now(UTC)
        rows = [
            (
                c.conflict_id,
                c.change_id,
                c.crm,
                c.crm_object,
                c.record_id,
                c.entity,
                json.dumps([asdict(f) for f in c.fields], default=str),
                c.status,
                json.dumps(c.decision) if c.decision else None,
                c.decided_by,
                now if c.status != OPEN else None,
                now,
            )
            for c in conflicts
        ]
        with self.warehouse.connect() as conn:
            conn.cursor().executemany(statement, rows)

    def all(self, status: str | None = None) -> list[Conflict]:
        if not self.warehouse.table_exists(SCHEMA, "conflicts"):
            return []
        where = sql("WHERE status = ?") if status else sql("")
        rows = self.warehouse.query(
            sql(
                "SELECT change_id, crm, crm_object, record_id, entity, fields, status, decision, decided_by "
                "FROM {table} {where} ORDER BY detected_at, conflict_id",
                table=CONFLICTS,
                where=where,
            ),
            (status,) if status else (),
        )
        return [
            Conflict(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                tuple(FieldConflict(**f) for f in json.loads(r[5])),
                r[6],
                json.loads(r[7]) if r[7] else None,
                r[8],
            )
            for r in rows
        ]

    def resolve(self, conflict_id: str, take: str, by: str, values: dict[str, Any] | None = None) -> Conflict:
        """A person's decision on an open conflict: keep the CRM's values, take ours, or edit."""
        if take not in (TAKE_CRM, TAKE_OURS, EDIT):
            raise ValueError(f"take must be one of {TAKE_CRM}, {TAKE_OURS}, {EDIT}")
        found = {c.conflict_id: c for c in self.all(OPEN)}
        conflict = found.get(conflict_id)
        if conflict is None:
            raise ValueError(f"no open conflict {conflict_id!r}")
        if take == EDIT:
            allowed = {f.field for f in conflict.fields} | {f.crm_field for f in conflict.fields}
            if not values or set(values) - allowed:
                names = sorted(f.field for f in conflict.fields)
                raise ValueError(f"edit gives values for the conflicting fields only: {names}")
        decision = {"take": take, "values": values or {}}
        self.warehouse.query(
            sql(
                "UPDATE {table} SET status = ?, decision = ?, decided_by = ?, decided_at = ? "
                "WHERE conflict_id = ?",
                table=CONFLICTS,
            ),
            (RESOLVED, json.dumps(decision, default=str), by, datetime.now(UTC), conflict_id),
        )
        now = datetime.now(UTC)
        AuditLog(self.warehouse).record(
            AuditEntry(
                None,
                "conflict_review",
                conflict.crm,
                conflict.entity,
                now,
                now,
                updated=int(take != TAKE_CRM),
                changed_fields={f.field: 1 for f in conflict.fields},
                details={"conflict": conflict_id, "take": take, "by": by, "record": conflict.record_id},
            )
        )
        return replace(conflict, status=RESOLVED, decision=decision, decided_by=by)


def screen(
    warehouse: Warehouse,
    planned: Sequence[Planned],
    changes: dict[str, Change],
    mappings: dict[str, Mapping],
    config: ConflictConfig,
) -> Screened:
    """Split the planned writes into those to send (fields settled), those already settled, and those
    held for review; conflicts found this pass are returned to be kept."""
    book = ConflictBook(warehouse)
    book.ensure()
    known = {c.conflict_id: c for c in book.all()}
    out = Screened()
    updates: dict[tuple[str, str], list[Planned]] = {}
    for p in planned:
        if p.write is None or p.write.record_id is None:
            out.send.append(p)  # refusals pass through; creates have no base to conflict with
            continue
        earlier = known.get(f"{p.change_id}:{p.crm}")
        if earlier is not None and earlier.status in (OPEN, RESOLVED):
            _apply_decision(out, p, earlier)
            continue
        updates.setdefault((p.crm, changes[p.change_id].entity), []).append(p)
    for (crm, entity), items in updates.items():
        _screen_updates(warehouse, out, crm, entity, items, changes, mappings[crm], config)
    return out


def _apply_decision(out: Screened, p: Planned, conflict: Conflict) -> None:
    if conflict.status == OPEN:
        out.held.append(conflict)
        return
    decision = conflict.decision or {}
    take = decision.get("take")
    assert p.write is not None
    if take == TAKE_OURS:
        out.send.append(p)
        return
    conflicting = {f.crm_field for f in conflict.fields}
    values = {k: v for k, v in p.write.values.items() if k not in conflicting}
    if take == EDIT:
        by_name = {f.field: f.crm_field for f in conflict.fields}
        values.update({by_name.get(k, k): v for k, v in decision.get("values", {}).items()})
    _send_or_settle(out, p, values, note=f"conflict resolved by {conflict.decided_by}: {take}")


def _send_or_settle(out: Screened, p: Planned, values: dict[str, Any], note: str) -> None:
    assert p.write is not None
    if values:
        write = replace(p.write, values=values)
        out.send.append(replace(p, write=write, crm_fields=tuple(sorted(values))))
    else:
        out.settled.append(
            Delivery(p.change_id, p.crm, WRITTEN, p.crm_object, p.write.record_id, False, None, note)
        )


def _screen_updates(
    warehouse: Warehouse,
    out: Screened,
    crm: str,
    entity: str,
    items: list[Planned],
    changes: dict[str, Change],
    mapping: Mapping,
    config: ConflictConfig,
) -> None:
    table = mapping.entities[entity].table
    raw = RAW_TABLES[crm][table]
    canonical = {spec.source: name for name, spec in mapping.entities[entity].fields.items() if spec.source}
    ids = sorted({p.write.record_id for p in items if p.write and p.write.record_id})
    now = _rows(warehouse, crm, table, raw.key_column, ids)
    kept: dict[str, list[dict]] = {}
    for version in RawHistory(warehouse).versions_of(crm, table, ids).iter_rows(named=True):
        kept.setdefault(str(version[raw.key_column]), []).append(version)  # oldest first
    for p in items:
        assert p.write is not None and p.write.record_id is not None
        change = changes[p.change_id]
        current = now.get(p.write.record_id)
        seen = [v for v in kept.get(p.write.record_id, []) if v[RECORDED_AT] < change.requested_at]
        base = seen[-1] if seen else None  # what the support system saw when it asked
        values: dict[str, Any] = {}
        found: list[FieldConflict] = []
        for crm_field, ours in p.write.values.items():
            column = raw_column(crm_field)
            theirs = current.get(column) if current else None
            if current is not None and _same(theirs, ours):
                continue  # the CRM already holds it
            if current is None or base is None or _same(theirs, base.get(column)):
                values[crm_field] = ours
                continue
            name = canonical.get(column, column)
            strategy, prefer = config.strategy(crm, entity, name)
            changed_at = current.get(raw.cursor_column)
            outcome = _outcome(strategy, prefer, changed_at, change.requested_at, config.skew_seconds)
            found.append(
                FieldConflict(
                    name,
                    crm_field,
                    as_text(base.get(column)),
                    as_text(theirs),
                    as_text(ours),
                    as_text(changed_at),
                    strategy,
                    outcome,
                )
            )
            if outcome == TAKE_OURS:
                values[crm_field] = ours
        if not found:
            _send_or_settle(out, p, values, note="the CRM already holds these values")
            continue
        review = any(f.outcome == "review" for f in found)
        conflict = Conflict(
            p.change_id, crm, p.crm_object, p.write.record_id, entity, tuple(found), OPEN if review else AUTO
        )
        out.detected.append(conflict)
        if review:
            out.held.append(conflict)
        else:
            _send_or_settle(out, p, values, note="every field settled in the CRM's favour")


def _outcome(strategy: str, prefer: str, crm_changed_at: Any, requested_at: datetime, skew: float) -> str:
    if strategy == "manual_review":
        return "review"
    if strategy == "field_merge":
        return TAKE_OURS if prefer == "outbound" else TAKE_CRM
    if isinstance(crm_changed_at, datetime) and crm_changed_at > requested_at + timedelta(seconds=skew):
        return TAKE_CRM  # last write wins: the CRM's change is the later one
    return TAKE_OURS


def _rows(warehouse: Warehouse, crm: str, table: str, key: str, ids: list[str]) -> dict[str, dict]:
    if not ids or not warehouse.table_exists(f"raw_{crm}", table):
        return {}  # nothing synced yet: nothing to conflict with
    frame = warehouse.read_frame(
        sql(
            "SELECT * FROM {table} WHERE CAST({key} AS VARCHAR) IN ({marks})",
            table=ident(f"raw_{crm}", table),
            key=ident(key),
            marks=placeholders(len(ids)),
        ),
        ids,
    )
    return {str(r[key]): r for r in frame.iter_rows(named=True)}


def _same(a: Any, b: Any) -> bool:
    return as_text(a) == as_text(b)
