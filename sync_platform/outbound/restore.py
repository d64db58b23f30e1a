"""Undo a bad import inside a CRM: the values records had before time T, written back.

The raw history keeps every version the warehouse saw (``ingest/history.py``), so "the values of
these records before T" is one query (``RawHistory.as_of``). Compared with the raw table now, each
record gets one update holding only the fields that differ, sent through the same idempotent
writers as write-back (an update by the CRM's id sets the same values however often it is sent).

Fields the CRM sets itself (ids, created and modified stamps, version numbers) are never written;
``fields`` narrows the restore to some CRM fields. A record created after T has no earlier version
and is left alone (listed as such): deleting records is not a restore's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sync_platform.core.sql import ident, placeholders, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.history import RawHistory
from sync_platform.ingest.raw_schema import DLT_SYSTEM_COLUMNS, RAW_TABLES, raw_column
from sync_platform.outbound.writes import Write

_SET_BY_THE_CRM = ("creat", "modif", "modstamp", "versionnumber", "fullname", "_value", "isdeleted", "owner")


@dataclass
class RestorePlan:
    crm: str
    table: str
    crm_object: str
    before: datetime
    writes: list[Write] = field(default_factory=list)
    changes: list[tuple[str, str, Any, Any]] = field(default_factory=list)  # (id, CRM field, now, before)
    no_earlier_version: list[str] = field(default_factory=list)


def restorable(crm: str, table: str) -> dict[str, str]:
    """Raw column -> CRM field for the fields a restore may write."""
    raw = RAW_TABLES[crm][table]
    out = {}
    for name in raw.fields:
        column = raw_column(name)
        if column in (raw.key_column, raw.cursor_column) or column in DLT_SYSTEM_COLUMNS:
            continue
        if any(part in column for part in _SET_BY_THE_CRM):
            continue
        out[column] = name
    return out


def plan_restore(
    warehouse: Warehouse,
    crm: str,
    table: str,
    before: datetime,
    ids: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
) -> RestorePlan:
    """What writing back the values of ``before`` would change, record by record and field by field."""
    if crm not in RAW_TABLES or table not in RAW_TABLES[crm]:
        raise ValueError(f"no raw table {table!r} for {crm!r}")
    raw = RAW_TABLES[crm][table]
    columns = restorable(crm, table)
    if fields:
        wanted = {f.lower() for f in fields}
        unknown = sorted(wanted - {c for c in columns} - {n.lower() for n in columns.values()})
        if unknown:
            choices = ", ".join(sorted(columns.values()))
            raise ValueError(f"not restorable in {crm} {table}: {', '.join(unknown)} (choose from {choices})")
        columns = {c: n for c, n in columns.items() if c in wanted or n.lower() in wanted}
    plan = RestorePlan(crm, table, raw.crm_object, before)
    earlier = RawHistory(warehouse).as_of(crm, table, before, list(ids) if ids else None)
    key = raw.key_column
    only = (
        sql("WHERE CAST({key} AS VARCHAR) IN ({marks})", key=ident(key), marks=placeholders(len(ids)))
        if ids
        else sql("")
    )
    now = warehouse.read_frame(
        sql("SELECT * FROM {table} {only}", table=ident(f"raw_{crm}", table), only=only), list(ids or [])
    )
    then = {str(r[key]): r for r in earlier.iter_rows(named=True)} if not earlier.is_empty() else {}
    for row in now.sort(key).iter_rows(named=True):
        record_id = str(row[key])
        old = then.get(record_id)
        if old is None:
            plan.no_earlier_version.append(record_id)
            continue
        values = {}
        for column, crm_field in columns.items():
            if column in old and old[column] != row.get(column):
                values[crm_field] = _wire(crm, old[column])
                plan.changes.append((record_id, crm_field, row.get(column), old[column]))
        if values:
            plan.writes.append(
                Write(f"restore:{crm}:{record_id}", raw.crm_object, values, record_id=record_id)
            )
    return plan


def _wire(crm: str, value: Any) -> Any:
    """A raw value as the CRM's API takes it: ISO dates; HubSpot's properties as strings."""
    if isinstance(value, datetime | date):
        value = value.isoformat()
    if crm == "hubspot" and value is not None and not isinstance(value, str):
        return ("true" if value else "false") if isinstance(value, bool) else str(value)
    return value


def record_restore(warehouse: Warehouse, plan: RestorePlan, results: list) -> None:
    """The audit trail of a restore: who put back what (field names and counts, never values)."""
    import getpass
    from datetime import UTC

    from sync_platform.ops.audit import AuditEntry, AuditLog

    now = datetime.now(UTC)
    refused = [r.ref for r in results if not r.ok]
    AuditLog(warehouse).record(
        AuditEntry(
            None,
            "crm_restore",
            plan.crm,
            plan.table,
            now,
            now,
            records_read=len(plan.writes),
            updated=len(results) - len(refused),
            rejected=len(refused),
            changed_fields=_field_counts(plan),
            status="partial" if refused else "success",
            details={"before": plan.before.isoformat(), "by": getpass.getuser(), "refused": refused[:20]},
        )
    )


def _field_counts(plan: RestorePlan) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, crm_field, _, _ in plan.changes:
        counts[crm_field] = counts.get(crm_field, 0) + 1
    return counts
