"""What one load did to each raw table: the figures every raw materialization reports.

Rows extracted / written / inserted / updated / deleted / re-read in the look-back window (0
explicitly when nothing changed), pages, requests, retries, the CRM's records/s, the cursor
high-water mark, the lag (how far the warehouse is behind the CRM: the sync is complete up to
the moment it started reading) and the newest change's age (a different figure: a quiet CRM's
newest record can be a year old while the sync is seconds behind). Counted from the warehouse
before and after the load, and from the source's own counters (``SyncReport``), so the Dagster
asset only passes them on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync_platform.core.errors import CrmRequestError
from sync_platform.core.sql import ident, placeholders, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.pipeline import dataset
from sync_platform.ingest.raw_schema import raw_table
from sync_platform.ingest.sources.common import DELETED_AT, SyncReport
from sync_platform.ops.alerts import Finding
from sync_platform.ops.audit import AuditEntry
from sync_platform.ops.dead_letters import DeadLetterQueue

FUTURE_CURSOR = "future_cursor"
FUTURE_EXAMPLES = 20  # records named in a future_cursor alert's details

AUDITED_DETAILS = (
    "rows_reread_in_look_back",
    "rows_total",
    "pages",
    "cursor_high_water",
    "lag_s",
    "complete_up_to",
    "newest_change_age_s",
    "step_elapsed_s",
)


@dataclass(frozen=True)
class TableCounts:
    total: int = 0
    deleted: int = 0


def table_counts(warehouse: Warehouse, crm: str, table: str) -> TableCounts:
    if not warehouse.table_exists(dataset(crm), table):
        return TableCounts()
    rows = warehouse.query(
        sql(
            "SELECT count(*), count({deleted_at}) FROM {table}",
            deleted_at=ident(DELETED_AT),
            table=ident(dataset(crm), table),
        )
    )
    return TableCounts(int(rows[0][0]), int(rows[0][1]))


def high_water(warehouse: Warehouse, crm: str, table: str) -> datetime | None:
    """The newest cursor among live rows (where the next incremental read starts, less the look-back)."""
    spec = raw_table(crm, table)
    if spec is None:
        return None
    rows = warehouse.query(
        sql(
            "SELECT max({cursor}) FROM {table} WHERE {deleted_at} IS NULL",
            cursor=ident(spec.cursor_column),
            table=ident(dataset(crm), table),
            deleted_at=ident(DELETED_AT),
        )
    )
    value = rows[0][0] if rows else None
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def rows_written(warehouse: Warehouse, crm: str, table: str, load_ids: Sequence[str]) -> int:
    """Distinct rows this load wrote: merge stamps each with the load id, however often it was read."""
    if not load_ids or not warehouse.table_exists(dataset(crm), table):
        return 0
    rows = warehouse.query(
        sql(
            "SELECT count(*) FROM {table} WHERE _dlt_load_id IN ({marks})",
            table=ident(dataset(crm), table),
            marks=placeholders(len(load_ids)),
        ),
        tuple(load_ids),
    )
    return int(rows[0][0])


def load_metrics(
    warehouse: Warehouse,
    report: SyncReport,
    table: str,
    before: TableCounts,
    elapsed: float,
    load_ids: Sequence[str],
    read_started: datetime,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The metadata of one raw table's materialization after a successful load."""
    crm = report.crm
    after = table_counts(warehouse, crm, table)
    resource = report.resource(table)
    inserted = max(0, after.total - before.total)
    newly_deleted = max(0, after.deleted - before.deleted)
    written = rows_written(warehouse, crm, table, load_ids)
    updated = max(0, written - inserted - newly_deleted - resource.reread)
    newest_cursor = high_water(warehouse, crm, table) if after.total else None
    newest = resource.newest_change or newest_cursor
    now = now or datetime.now(UTC)
    newest_age = (now - newest).total_seconds() if newest else None
    return {
        "rows_loaded": resource.rows,
        "rows_extracted": resource.rows,
        "rows_written": written,
        "rows_inserted": inserted,
        "rows_updated": updated,
        "rows_deleted": newly_deleted,
        "rows_reread_in_look_back": resource.reread,
        "rows_rejected": len(resource.rejects),
        "future_stamped_rows": len(resource.future_stamped),
        "cursor_clamped_to": resource.cursor_clamped_to.isoformat() if resource.cursor_clamped_to else "none",
        "read_mode": resource.read_mode,
        "deletes_visible": resource.deletes_visible,
        "rows_total": after.total,
        "pages": resource.pages,
        "step_elapsed_s": round(elapsed, 3),
        "crm_records_per_s": round(report.records_per_second(), 1),
        "cursor_high_water": newest_cursor.isoformat() if newest_cursor else "none",
        "complete_up_to": read_started.isoformat(),
        "lag_s": round((now - read_started).total_seconds(), 1),
        "newest_change_age_s": round(newest_age, 1) if newest_age is not None else -1.0,
        **{f"source_{k}": v for k, v in report.stats.as_metadata().items()},  # errors_by_kind: the taxonomy
        "dead_letters_pending": DeadLetterQueue(warehouse).depth(crm),
    }


def future_cursor_scope(crm: str, table: str) -> str:
    return f"{FUTURE_CURSOR}:{crm}:{table}:"


def future_cursor_findings(report: SyncReport, table: str) -> list[Finding]:
    """The records this read found stamped past the CRM's clock: loaded, kept out of the cursor, and
    worth a person's look (their stamp is wrong at the source; the alert clears once no read sees one)."""
    resource = report.resource(table)
    if not resource.future_stamped:
        return []
    crm = report.crm
    records = [
        {"id": record_id, "stamp": stamp.isoformat()}
        for record_id, stamp in sorted(resource.future_stamped.items(), key=lambda item: (item[1], item[0]))
    ]
    first = records[0]
    held = resource.cursor_clamped_to.isoformat() if resource.cursor_clamped_to else None
    cursor = (
        f"the sync cursor was held at {held}" if held else "the sync cursor stayed within the CRM's clock"
    )
    return [
        Finding(
            key=f"{future_cursor_scope(crm, table)}stamps",
            severity="warning",
            finding=FUTURE_CURSOR,
            message=f"{crm}.{table}: {len(records)} record(s) stamped after the CRM's clock "
            f"(first: {first['id']} at {first['stamp']}). Loaded, and {cursor}, so later changes are still "
            "read; correct the stamp at the source.",
            crm=crm,
            asset=f"raw/{crm}/{table}",
            details={"count": len(records), "records": records[:FUTURE_EXAMPLES], "cursor_clamped_to": held},
        )
    ]


def load_audit_entry(
    metadata: Mapping[str, Any], crm: str, table: str, run_id: str, started_at: datetime
) -> AuditEntry:
    """The audit account of one object's load, from the figures already in its metadata."""
    return AuditEntry(
        run_id=run_id,
        step="ingest",
        crm=crm,
        entity=table,
        started_at=started_at,
        ended_at=datetime.now(UTC),
        records_read=int(metadata["rows_extracted"]),
        inserted=int(metadata["rows_inserted"]),
        updated=int(metadata["rows_updated"]),
        deleted=int(metadata["rows_deleted"]),
        rejected=int(metadata.get("rows_rejected", 0)),
        details={k: metadata[k] for k in AUDITED_DETAILS},
    )


def failed_load_audit_entries(
    crm: str,
    tables: Sequence[str],
    run_id: str,
    started_at: datetime,
    exc: BaseException,
    cause: CrmRequestError | None,
) -> list[AuditEntry]:
    """One ``failed`` entry per object of a load that did not happen; ``cause`` is the CRM error, if any."""
    details = (
        {
            "attempts": cause.attempts,
            "http_status": cause.status,
            "request": f"{cause.method} {cause.path}".strip() or None,
            "error": str(cause),
        }
        if cause is not None
        else {"error": str(exc)[:500]}
    )
    error_class = cause.kind.value if cause is not None else type(exc).__name__
    ended_at = datetime.now(UTC)
    return [
        AuditEntry(
            run_id=run_id,
            step="ingest",
            crm=crm,
            entity=table,
            started_at=started_at,
            ended_at=ended_at,
            status="failed",
            error_class=error_class,
            details=details,
        )
        for table in tables
    ]
