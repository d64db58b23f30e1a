"""The quarantine: rows a quality gate rejected, with the rule they broke, never silently dropped.

One row per (record, broken rule) in ``ops.quarantine``: entity, key, rule, column, the offending
value **masked** when it is personal data, mapping version and run id. Every canonical run
re-judges every raw row, so a record fixed at the source leaves quarantine by passing; ``release``
records that a person reviewed an entry.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from sync_platform.core.sql import Fragment, ident, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.security.redaction import mask_value

DATASET, TABLE = "ops", "quarantine"
_TABLE = ident(DATASET, TABLE)


def quarantine_rows(
    failures: pl.DataFrame, entity: str, versions: dict[str, int], run_id: str
) -> pl.DataFrame:
    """Failure cases in the quarantine layout, values masked."""
    if failures.is_empty():
        return pl.DataFrame()
    masked = [
        mask_value(c, v)
        for c, v in zip(failures["column"].to_list(), failures["value"].to_list(), strict=True)
    ]
    return failures.select(
        pl.lit(entity).alias("entity"),
        "source_system",
        "source_id",
        "rule",
        "column",
        pl.Series("value_masked", masked, dtype=pl.String),
        pl.col("source_system")
        .replace_strict(versions, default=None, return_dtype=pl.Int64)
        .alias("mapping_version"),
        pl.lit(run_id).alias("run_id"),
        pl.lit(datetime.now(UTC)).alias("quarantined_at"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("released_at"),
    )


def record(warehouse: Warehouse, rows: pl.DataFrame) -> int:
    if rows.is_empty():
        return 0
    warehouse.write_frame(rows, DATASET, TABLE, disposition="append")
    return rows.height


def latest(warehouse: Warehouse, entity: str | None = None, limit: int = 50) -> pl.DataFrame:
    """The newest quarantine entries (of the last run per entity)."""
    if not warehouse.table_exists(DATASET, TABLE):
        return pl.DataFrame()
    where, params = (Fragment("WHERE entity = ?"), [entity]) if entity else (Fragment(""), [])
    return warehouse.read_frame(
        sql(
            'SELECT entity, source_system, source_id, rule, "column", value_masked, mapping_version, run_id, '
            "quarantined_at, released_at FROM {table} {where} ORDER BY quarantined_at DESC LIMIT ?",
            table=_TABLE,
            where=where,
        ),
        [*params, int(limit)],
    )


def keys_of_latest_run(warehouse: Warehouse, entity: str) -> pl.DataFrame:
    """(source_system, source_id) quarantined by the newest run for ``entity``: records that exist at the
    source but failed a rule, so a child linking to them is not dangling."""
    if not warehouse.table_exists(DATASET, TABLE):
        return pl.DataFrame(schema={"source_system": pl.String, "source_id": pl.String})
    return warehouse.read_frame(
        sql(
            "SELECT DISTINCT source_system, source_id FROM {table} WHERE entity = ? AND run_id = "
            "(SELECT run_id FROM {table} WHERE entity = ? ORDER BY quarantined_at DESC LIMIT 1)",
            table=_TABLE,
        ),
        [entity, entity],
    )


def release(warehouse: Warehouse, source_system: str, source_id: str) -> int:
    """Mark a record's open entries reviewed; returns how many."""
    if not warehouse.table_exists(DATASET, TABLE):
        return 0
    where = Fragment("source_system = ? AND source_id = ? AND released_at IS NULL")
    count = warehouse.query(
        sql("SELECT count(*) FROM {table} WHERE {where}", table=_TABLE, where=where),
        (source_system, source_id),
    )
    warehouse.query(
        sql("UPDATE {table} SET released_at = ? WHERE {where}", table=_TABLE, where=where),
        (datetime.now(UTC), source_system, source_id),
    )
    return int(count[0][0])
