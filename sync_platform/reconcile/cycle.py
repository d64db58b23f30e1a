"""One reconciliation cycle of a CRM: list the source, compare with the raw tables, keep the result.

The listing (``sources/<crm>/listing.py``) is loaded by dlt into ``reconcile_<crm>.<table>``, next to the
raw tables, so both sides share types and can be compared in one process (polars, below) or
inside the warehouse (``reconcile.sql``) when they outgrow one. The compared fields are the ones
the CRM's mapping reads: a field nobody maps cannot corrupt the canonical model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from sync_platform.canonical.mapping.loader import load_mappings
from sync_platform.core.config import CrmSyncConfig
from sync_platform.core.sql import Fragment, ident, join, placeholders, quoted, sql
from sync_platform.core.warehouse import Warehouse, run_pipeline
from sync_platform.ingest.connections import build_listing_source, listing_columns
from sync_platform.ingest.raw_schema import raw_column, raw_table
from sync_platform.ingest.sources.common import DELETED_AT, SyncReport
from sync_platform.ingest.sources.listing_common import UNREADABLE
from sync_platform.reconcile.anomalies import Anomaly, cursor_anomalies
from sync_platform.reconcile.diff import Diff, classify, field_differences
from sync_platform.reconcile.hashing import content_hash, content_hash_sql
from sync_platform.reconcile.history import drift_row, drift_status, record_drift
from sync_platform.reconcile.report import EntityReport

DIFFERENCES = ("reconcile", "differences")


@dataclass(frozen=True)
class Target:
    """One raw table under reconciliation, with its columns as the CRM and as dlt name them."""

    crm: str
    table: str
    entity: str
    crm_key: str
    crm_cursor: str
    crm_fields: tuple[str, ...]

    @property
    def key(self) -> str:
        return raw_column(self.crm_key)

    @property
    def cursor(self) -> str:
        return raw_column(self.crm_cursor)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(raw_column(f) for f in self.crm_fields)

    @property
    def asset_path(self) -> str:
        return f"raw/{self.crm}/{self.table}"


def targets(crm: str) -> list[Target]:
    """Every entity the CRM's mapping reads, comparing the mapped fields (not key, cursor or deletes)."""
    mapping = load_mappings()[crm]
    found = []
    for entity, spec in sorted(mapping.entities.items()):
        raw = raw_table(crm, spec.table)
        if raw is None:
            continue
        key, cursor, _ = listing_columns(crm, spec.table, [])
        mapped = spec.source_columns
        fields = tuple(sorted(f for f in raw.fields if raw_column(f) in mapped and f not in (key, cursor)))
        found.append(Target(crm, spec.table, entity, key, cursor, fields))
    return found


def listing_dataset(crm: str) -> str:
    return f"reconcile_{crm}"


def list_source(crm: str, cfg: CrmSyncConfig, wanted: list[Target], warehouse: Warehouse) -> SyncReport:
    """Load a fresh listing of ``wanted`` into ``reconcile_<crm>`` (replacing the previous one)."""
    report = SyncReport(crm)
    source = build_listing_source(crm, cfg, {t.table: list(t.crm_fields) for t in wanted}, report=report)
    pipeline = warehouse.pipeline(f"reconcile_{crm}", listing_dataset(crm))
    with warehouse.turn():
        run_pipeline(pipeline, source)
    return report


def read_side(
    warehouse: Warehouse,
    target: Target,
    schema: str,
    live_only: bool,
    ids: list[str] | None = None,
    compared_only: bool = False,
) -> pl.DataFrame:
    """(id, cursor, compared fields) of one side, optionally only ``ids``; empty if the table is missing.

    ``compared_only`` leaves out the records the listing could not read (``compared_rows``).
    """
    if not warehouse.table_exists(schema, target.table):
        return pl.DataFrame(
            schema={
                "id": pl.String,
                "cursor": pl.Datetime("us", "UTC"),
                **{f: pl.String for f in target.fields},
            }
        )
    columns = join([quoted(c) for c in (target.key, target.cursor, *target.fields)])
    where = [sql("{deleted_at} IS NULL", deleted_at=ident(DELETED_AT))] if live_only else []
    if compared_only:
        where.append(compared_rows(target, schema))
    params: list[str] = []
    if ids is not None:
        marks = placeholders(len(ids)) if ids else Fragment("NULL")
        where.append(sql("{key} IN ({marks})", key=quoted(target.key), marks=marks))
        params = list(ids)
    statement = sql("SELECT {columns} FROM {table}", columns=columns, table=ident(schema, target.table))
    if where:
        statement = sql(
            "{statement} WHERE {conditions}", statement=statement, conditions=join(where, " AND ")
        )
    frame = warehouse.read_frame(statement, params)
    return frame.rename({target.key: "id", target.cursor: "cursor"})


def compare(warehouse: Warehouse, target: Target) -> tuple[Diff, pl.DataFrame, pl.DataFrame]:
    """Classify every difference between the listing and the raw table's live rows.

    Returns the diff and both sides (id, cursor, fields), for field-level reporting.
    """
    source = read_side(warehouse, target, listing_dataset(target.crm), live_only=False, compared_only=True)
    raw = read_side(warehouse, target, f"raw_{target.crm}", live_only=True, compared_only=True)
    fields = list(target.fields)
    diff = classify(
        source.select("id", _utc("cursor"), content_hash(source, fields)),
        raw.select("id", _utc("cursor"), content_hash(raw, fields)),
    )
    return diff, source, raw


def compared_rows(target: Target, schema: str) -> Fragment:
    """The condition on ``schema``'s rows of ``target`` that takes part in the comparison.

    A record the listing could not read is not compared: it is not missing from the CRM, so its
    warehouse row must not look extra (remediation would delete it). Both sides leave it out.
    """
    listing = ident(listing_dataset(target.crm), target.table)
    unreadable = quoted(UNREADABLE)
    if schema == listing_dataset(target.crm):
        return sql("{unreadable} IS NULL", unreadable=unreadable)
    return sql(
        "{key} NOT IN (SELECT {key} FROM {listing} WHERE {unreadable} IS NOT NULL)",
        key=quoted(target.key),
        listing=listing,
        unreadable=unreadable,
    )


def unreadable_ids(warehouse: Warehouse, target: Target) -> list[str]:
    """The ids the last listing of ``target`` could not read (left out of the comparison), sorted."""
    listing = ident(listing_dataset(target.crm), target.table)
    rows = warehouse.query(
        sql(
            "SELECT {key} FROM {listing} WHERE {unreadable} IS NOT NULL ORDER BY {key}",
            key=quoted(target.key),
            listing=listing,
            unreadable=quoted(UNREADABLE),
        )
    )
    return [str(r[0]) for r in rows]


def _utc(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Datetime("us", "UTC"))


def save_differences(
    warehouse: Warehouse, target: Target, diff: Diff, run_id: str, checked_at: datetime
) -> None:
    """Replace this target's rows in ``reconcile.differences`` (the ids remediation re-fetches)."""
    schema, table = DIFFERENCES
    if warehouse.table_exists(schema, table):
        warehouse.query(
            sql("DELETE FROM {table} WHERE crm = ? AND object = ?", table=ident(schema, table)),
            (target.crm, target.table),
        )
    if diff.differences.is_empty():
        return
    frame = diff.differences.select(
        pl.lit(target.crm).alias("crm"),
        pl.lit(target.table).alias("object"),
        pl.lit(target.entity).alias("entity"),
        "id",
        "class",
        _utc("source_cursor"),
        _utc("warehouse_cursor"),
        pl.lit(checked_at).alias("checked_at"),
        pl.lit(run_id).alias("run_id"),
    )
    warehouse.write_frame(frame, schema, table, disposition="append")


def pending_differences(warehouse: Warehouse, crm: str, table: str | None = None) -> pl.DataFrame:
    schema, name = DIFFERENCES
    if not warehouse.table_exists(schema, name):
        return pl.DataFrame(schema={"object": pl.String, "id": pl.String, "class": pl.String})
    where, params = Fragment("crm = ?"), [crm]
    if table:
        where, params = Fragment("crm = ? AND object = ?"), [crm, table]
    return warehouse.read_frame(
        sql('SELECT object, id, "class" FROM {table} WHERE {where}', table=ident(schema, name), where=where),
        params,
    )


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TargetResult:
    """What one cycle found for one raw table."""

    target: Target
    diff: Diff
    threshold: float
    top_fields: pl.DataFrame
    anomalies: list[Anomaly]
    checked_at: datetime
    unreadable: list[str] = field(default_factory=list)  # listed but not readable: not compared

    @property
    def status(self) -> str:
        return drift_status(self.diff.drift_share, self.threshold)

    def sample_ids(self, per_class: int = 5) -> dict[str, list[str]]:
        return self.diff.sample_ids(per_class)

    def to_report(self) -> EntityReport:
        return EntityReport(
            self.target.crm,
            self.target.table,
            self.diff,
            self.threshold,
            self.top_fields,
            self.anomalies,
            unreadable=self.unreadable,
        )


def compare_in_warehouse(warehouse: Warehouse, target: Target) -> Diff:
    """The same classification as ``compare``, run as SQL inside the warehouse (bucket checksums,
    then only differing buckets fetched): memory stays flat however large the tables grow."""
    from sync_platform.reconcile.sql import classify_in_warehouse

    kinds = raw_table(target.crm, target.table).fields  # type: ignore[union-attr]
    hashed = content_hash_sql({raw_column(f): kinds[f] for f in target.crm_fields}, warehouse.kind)

    def side(schema: str, where: Fragment) -> Fragment:
        return sql(
            "(SELECT CAST({key} AS VARCHAR) AS id, {cursor} AS cursor, {hashed} AS content_hash "
            "FROM {table}{where})",
            key=quoted(target.key),
            cursor=quoted(target.cursor),
            hashed=hashed,
            table=ident(schema, target.table),
            where=where,
        )

    listing, raw = listing_dataset(target.crm), f"raw_{target.crm}"
    listed = sql(" WHERE {compared}", compared=compared_rows(target, listing))
    live = sql(
        " WHERE {deleted_at} IS NULL AND {compared}",
        deleted_at=ident(DELETED_AT),
        compared=compared_rows(target, raw),
    )
    return classify_in_warehouse(warehouse, side(listing, listed), side(raw, live))


def evaluate(
    warehouse: Warehouse, target: Target, threshold: float, anomaly_options: dict, engine: str = "polars"
) -> TargetResult:
    """Compare the loaded listing with the raw table: diff, top offending fields, cursor anomalies.

    ``engine`` ``polars`` reads both sides' compared columns into this process; ``sql`` classifies
    inside the warehouse and reads only the differing rows (and the listing's ids and cursors, for
    the anomalies that look at every record).
    """
    checked_at = now()
    if engine == "sql":
        diff = compare_in_warehouse(warehouse, target)
        ids = diff.ids("stale", "diverged")[:1000]
        source_rows = read_side(warehouse, target, listing_dataset(target.crm), live_only=False, ids=ids)
        raw_rows = read_side(warehouse, target, f"raw_{target.crm}", live_only=True, ids=ids)
        cursors = warehouse.read_frame(
            sql(
                "SELECT {key} AS id, {cursor} AS cursor FROM {table} WHERE {compared}",
                key=quoted(target.key),
                cursor=quoted(target.cursor),
                table=ident(listing_dataset(target.crm), target.table),
                compared=compared_rows(target, listing_dataset(target.crm)),
            )
        )
    else:
        diff, source_rows, raw_rows = compare(warehouse, target)
        cursors = source_rows.select("id", "cursor")
        differing = pl.Series(diff.ids("stale", "diverged")[:1000], dtype=pl.String).implode()
        source_rows = source_rows.filter(pl.col("id").is_in(differing))
        raw_rows = raw_rows.filter(pl.col("id").is_in(differing))
    top = field_differences(source_rows, raw_rows, list(target.fields))
    anomalies = cursor_anomalies(diff, cursors.select("id", _utc("cursor")), checked_at, **anomaly_options)
    return TargetResult(
        target, diff, threshold, top, anomalies, checked_at, unreadable_ids(warehouse, target)
    )


def run_cycle(
    crm: str,
    cfg: CrmSyncConfig,
    run_id: str,
    warehouse: Warehouse,
    thresholds,
    anomaly_options: dict,
    only: list[str] | None = None,
    engine: str = "polars",
) -> tuple[list[TargetResult], SyncReport]:
    """List the CRM, compare every target, save the differences and the drift history."""
    wanted = [t for t in targets(crm) if only is None or t.table in only]
    report = list_source(crm, cfg, wanted, warehouse)
    results = []
    for target in wanted:
        result = evaluate(warehouse, target, thresholds(crm, target.table), anomaly_options, engine)
        save_differences(warehouse, target, result.diff, run_id, result.checked_at)
        record_drift(
            warehouse,
            [
                drift_row(
                    result.diff,
                    crm,
                    target.table,
                    result.threshold,
                    checked_at=result.checked_at,
                    run_id=run_id,
                )
            ],
        )
        results.append(result)
    return results, report
