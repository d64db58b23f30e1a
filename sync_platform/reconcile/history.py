"""Drift over time: one row per check and CRM/entity in ``reconcile.drift_history``.

A single drift figure says little; its trend says whether a sync is decaying. Rows are appended
through ``Warehouse.write_frame`` (dlt), so DuckDB and PostgreSQL get the same table.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from sync_platform.core.sql import Fragment, ident, idents, join, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.reconcile.diff import CLASSES, Diff

DATASET, TABLE = "reconcile", "drift_history"
OK, WARN, ERROR = "ok", "warn", "error"
CRM_TO_WAREHOUSE = "crm_to_warehouse"  # other directions (canonical -> CRM, across CRMs) slot in beside it
SCHEMA: dict[str, pl.DataType] = {
    "checked_at": pl.Datetime("us", "UTC"),
    "crm": pl.String(),
    "entity": pl.String(),
    "source_records": pl.Int64(),
    "warehouse_records": pl.Int64(),
    **{cls: pl.Int64() for cls in CLASSES},
    "drift_share": pl.Float64(),
    "threshold": pl.Float64(),
    "status": pl.String(),
    "run_id": pl.String(),
    "ahead": pl.Int64(),
    "direction": pl.String(),
}


def drift_status(drift_share: float, threshold: float) -> str:
    """``error`` above the threshold, ``warn`` on any drift below it, ``ok`` without drift."""
    if drift_share > threshold:
        return ERROR
    return WARN if drift_share > 0 else OK


def drift_row(
    diff: Diff,
    crm: str,
    entity: str,
    threshold: float,
    *,
    checked_at: datetime | None = None,
    run_id: str | None = None,
    direction: str = CRM_TO_WAREHOUSE,
) -> dict:
    """The history row of one comparison."""
    return {
        "checked_at": checked_at or datetime.now(UTC),
        "crm": crm,
        "entity": entity,
        "source_records": diff.source_records,
        "warehouse_records": diff.warehouse_records,
        **{cls: diff.counts[cls] for cls in CLASSES},
        "drift_share": diff.drift_share,
        "threshold": threshold,
        "status": drift_status(diff.drift_share, threshold),
        "run_id": run_id,
        "ahead": diff.ahead,
        "direction": direction,
    }


def history_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)


def record_drift(warehouse: Warehouse, rows: list[dict] | pl.DataFrame) -> int:
    """Append history rows; returns how many."""
    frame = rows if isinstance(rows, pl.DataFrame) else history_frame(rows)
    if frame.is_empty():
        return 0
    warehouse.write_frame(frame.select(list(SCHEMA)).cast(SCHEMA), DATASET, TABLE, disposition="append")
    return frame.height


def read_history(
    warehouse: Warehouse,
    crm: str | None = None,
    entity: str | None = None,
    since: datetime | None = None,
    direction: str | None = None,
) -> pl.DataFrame:
    """The trend, oldest first (an empty frame of the same schema before the first check)."""
    if not warehouse.table_exists(DATASET, TABLE):
        return history_frame([])
    where, params = [], []
    for column, value in (("crm", crm), ("entity", entity), ("direction", direction)):
        if value is not None:
            where.append(sql("{column} = ?", column=ident(column)))
            params.append(value)
    if since is not None:
        where.append(Fragment("checked_at >= ?"))
        params.append(since)
    clause = sql("WHERE {conditions}", conditions=join(where, " AND ")) if where else Fragment("")
    rows = warehouse.query(
        sql(
            "SELECT {columns} FROM {table} {clause} ORDER BY checked_at, crm, entity",
            columns=idents(SCHEMA),
            table=ident(DATASET, TABLE),
            clause=clause,
        ),
        params,
    )
    return history_frame([dict(zip(SCHEMA, row, strict=True)) for row in rows])
