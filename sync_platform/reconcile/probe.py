"""The activity probe: re-read a random sample of records by id and compare them with the warehouse.

A cursor can freeze (an admin script overwrote the system timestamp) while records keep
changing: the incremental sync then reports 0 changes, exactly like an idle CRM. The probe tells
the two apart cheaply after every sync: a few by-id requests (200 ids is 1 SOQL query, 2 HubSpot
batch reads, 1 Dataverse query) whose content hashes must match the warehouse's. Records that
changed without their cursor moving show up as differing; an idle CRM shows none. With 1 % of
records silently edited, a 200-record sample sees at least one with 87 % probability per run.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from sync_platform.core.config import CrmSyncConfig
from sync_platform.core.sql import ident, quoted, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.connections import build_by_id_source
from sync_platform.ingest.pipeline import crm_error
from sync_platform.ingest.raw_schema import raw_column
from sync_platform.ingest.sources.common import DELETED_AT, SyncReport
from sync_platform.reconcile.cycle import Target, read_side, targets
from sync_platform.reconcile.diff import classify
from sync_platform.reconcile.hashing import content_hash

HISTORY = ("reconcile", "probe_history")


@dataclass(frozen=True)
class ProbeResult:
    table: str
    sampled: int
    differing: int
    example_ids: list[str]


def _pages_by_table(source) -> dict[str, list[pa.Table]]:
    """Run the by-id source in memory: a sample is small, and nothing of it belongs in the warehouse."""
    pages: dict[str, list[pa.Table]] = {}
    for name, resource in source.selected_resources.items():
        pages[name] = [item for item in resource if isinstance(item, pa.Table)]
    return pages


def _fetched(pages: list[pa.Table], target: Target) -> pl.DataFrame:
    """The fetched live records as (id, cursor, fields) with the raw table's column names."""
    columns = (target.crm_key, target.crm_cursor, *target.crm_fields)
    if not pages:
        return pl.DataFrame(
            schema={
                "id": pl.String,
                "cursor": pl.Datetime("us", "UTC"),
                **{raw_column(f): pl.String for f in target.crm_fields},
            }
        )
    frame = pl.concat([pl.from_arrow(p) for p in pages], how="diagonal_relaxed")
    if DELETED_AT in frame.columns:
        frame = frame.filter(pl.col(DELETED_AT).is_null())
    return frame.select(columns).rename(
        {target.crm_key: "id", target.crm_cursor: "cursor", **{f: raw_column(f) for f in target.crm_fields}}
    )


def sample_ids(warehouse: Warehouse, crm: str, target: Target, size: int) -> list[str]:
    if size <= 0 or not warehouse.table_exists(f"raw_{crm}", target.table):
        return []
    rows = warehouse.query(
        sql(
            "SELECT {key} FROM {table} WHERE {deleted_at} IS NULL ORDER BY random() LIMIT ?",
            key=quoted(target.key),
            table=ident(f"raw_{crm}", target.table),
            deleted_at=ident(DELETED_AT),
        ),
        [int(size)],
    )
    return [r[0] for r in rows]


def probe(
    crm: str, cfg: CrmSyncConfig, warehouse: Warehouse, size: int
) -> tuple[list[ProbeResult], SyncReport]:
    """Sample each target, fetch the sample by id (in memory), count records that differ.

    Raises the ``CrmRequestError`` that stopped the fetch, unwrapped from dlt's extraction error.
    """
    wanted = targets(crm)
    samples = {t.table: sample_ids(warehouse, crm, t, size) for t in wanted}
    report = SyncReport(crm)
    if not any(samples.values()):
        return [ProbeResult(t.table, 0, 0, []) for t in wanted], report
    source = build_by_id_source(crm, cfg, {t: ids for t, ids in samples.items() if ids}, report=report)
    try:
        fetched_pages = _pages_by_table(source)
    except Exception as exc:
        cause = crm_error(exc)  # dlt wraps the CRM's error in its own extraction errors
        if cause is None:
            raise
        raise cause from None
    results = []
    for target in wanted:
        ids = samples[target.table]
        if not ids:
            results.append(ProbeResult(target.table, 0, 0, []))
            continue
        sampled = pl.Series(ids, dtype=pl.String).implode()
        fetched = _fetched(fetched_pages.get(target.table, []), target).filter(pl.col("id").is_in(sampled))
        raw = read_side(warehouse, target, f"raw_{crm}", live_only=True, ids=ids)
        fields = list(target.fields)
        diff = classify(
            fetched.select("id", "cursor", content_hash(fetched, fields)),
            raw.select("id", "cursor", content_hash(raw, fields)),
        )
        # stale rows changed after this run read them (the next run picks them up): not a missed change
        differing = diff.differences.filter(pl.col("class").is_in(["diverged", "extra"]))
        results.append(
            ProbeResult(target.table, len(ids), differing.height, differing["id"].head(10).to_list())
        )
    return results, report
