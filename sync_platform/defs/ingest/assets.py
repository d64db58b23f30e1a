"""Raw CRM assets: one ``@dlt_assets`` per CRM, metadata every run, loud failures.

Every materialization reports rows extracted/inserted/updated/deleted (0 explicitly when
nothing changed), pages, requests, retries, 429s, elapsed time, records/s, the cursor
high-water mark and the lag (now minus the newest source change seen). A request that fails
for good becomes a dead letter and fails the run: the dlt load and its cursor never happen,
so the next run starts from the same place. Every run, good or failed, writes one
``ops.audit_log`` entry per CRM object (step ``ingest``).
"""


import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
from dagster_dlt import DagsterDltResource, dlt_assets

from sync_platform.audit import AuditEntry, AuditLog
from sync_platform.config import CRMS, load_sync_config
from sync_platform.connections import build_source
from sync_platform.dead_letters import DeadLetterQueue
from sync_platform.pipelines import build_pipeline, crm_error, dataset
from sync_platform.settings import load_settings
from sync_platform.sources.common import DELETED_AT, SyncReport
from sync_platform.sources.errors import CrmRequestError
from sync_platform.warehouse import Warehouse

from .translator import CrmTranslator

WAREHOUSE_POOL = "warehouse_writes"
CURSORS = {"salesforce": "system_modstamp", "hubspot": None, "dynamics": "modifiedon"}
HUBSPOT_CURSORS = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate", "tickets": "hs_lastmodifieddate"}


class IngestConfig(dg.Config):
    full_refresh: bool = False
    """Drop the saved cursors and re-read everything (merge keeps it idempotent)."""


def cursor_column(crm: str, table: str) -> str:
    return HUBSPOT_CURSORS[table] if crm == "hubspot" else CURSORS[crm]  # type: ignore[return-value]


def _table_counts(warehouse: Warehouse, crm: str, table: str) -> tuple[int, int]:
    if not warehouse.table_exists(dataset(crm), table):
        return 0, 0
    rows = warehouse.query(f"SELECT count(*), count({DELETED_AT}) FROM {dataset(crm)}.{table}")
    return int(rows[0][0]), int(rows[0][1])


def _high_water(warehouse: Warehouse, crm: str, table: str) -> datetime | None:
    column = cursor_column(crm, table)
    rows = warehouse.query(f"SELECT max({column}) FROM {dataset(crm)}.{table} WHERE {DELETED_AT} IS NULL")
    value = rows[0][0] if rows else None
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def build_crm_assets(crm: str) -> dg.AssetsDefinition:
    cfg = load_sync_config().crm(crm)
    translator = CrmTranslator(crm, cfg.owners)
    warehouse_for_specs = Warehouse.from_env()

    @dlt_assets(
        dlt_source=build_source(crm, cfg, placeholder=True),
        dlt_pipeline=build_pipeline(crm, warehouse_for_specs),
        name=f"{crm}_raw",
        dagster_dlt_translator=translator,
        pool=WAREHOUSE_POOL,
    )
    def crm_raw_assets(context: dg.AssetExecutionContext, dlt: DagsterDltResource,
                       config: IngestConfig) -> Iterator[dg.MaterializeResult]:
        warehouse = Warehouse.from_env()
        report = SyncReport(crm)
        # read per run: an edited sync.yaml applies to the next run without reloading the code location
        source = build_source(crm, load_sync_config().crm(crm), report=report)
        tables = [key.path[-1] for key in context.selected_asset_keys]
        before = {t: _table_counts(warehouse, crm, t) for t in tables}
        started_at = datetime.now(UTC)
        started = time.monotonic()
        kwargs = {"refresh": "drop_sources"} if config.full_refresh else {}
        pipeline = build_pipeline(crm, warehouse)
        try:
            results = list(dlt.run(context=context, dlt_source=source, dlt_pipeline=pipeline, **kwargs))
        except Exception as exc:
            cause = crm_error(exc)
            _audit_failure(context, warehouse, crm, tables, started_at, exc, cause)
            if cause is None:
                raise
            DeadLetterQueue(warehouse).add_failure(cause, tables, context.run_id)
            raise dg.Failure(description=str(cause), metadata={
                "error_kind": cause.kind.value, "attempts": cause.attempts, "dead_letters": len(tables),
                **report.stats.as_metadata()}) from None
        elapsed = time.monotonic() - started
        _dead_letter_rejects(context, warehouse, report)
        load_ids = list(pipeline.last_trace.last_load_info.loads_ids) if pipeline.last_trace else []
        entries = []
        for result in results:
            enriched = _enrich(result, crm, warehouse, report, before, elapsed, load_ids)
            entries.append(_audit_entry(enriched, crm, context.run_id, started_at))
            yield enriched
        AuditLog(warehouse).record(*entries)

    return crm_raw_assets


def _audit_entry(result: dg.MaterializeResult, crm: str, run_id: str, started_at: datetime) -> AuditEntry:
    """The audit account of one object's load, from the counts already in its metadata."""
    meta = result.metadata or {}
    return AuditEntry(
        run_id=run_id, step="ingest", crm=crm, entity=result.asset_key.path[-1],  # type: ignore[union-attr]
        started_at=started_at, ended_at=datetime.now(UTC), records_read=int(meta["rows_extracted"]),
        inserted=int(meta["rows_inserted"]), updated=int(meta["rows_updated"]), deleted=int(meta["rows_deleted"]),
        rejected=int(meta.get("rows_rejected", 0)),
        details={k: meta[k] for k in ("rows_reread_in_look_back", "rows_total", "pages", "cursor_high_water",
                                      "lag_s", "step_elapsed_s")})


def _audit_failure(context: dg.AssetExecutionContext, warehouse: Warehouse, crm: str, tables: list[str],
                   started_at: datetime, exc: BaseException, cause: CrmRequestError | None) -> None:
    """Audit a failed load per object. Best effort: it must never hide the failure it records."""
    details = ({"attempts": cause.attempts, "http_status": cause.status,
                "request": f"{cause.method} {cause.path}".strip() or None, "error": str(cause)}
               if cause is not None else {"error": str(exc)[:500]})
    error_class = cause.kind.value if cause is not None else type(exc).__name__
    ended_at = datetime.now(UTC)
    try:
        AuditLog(warehouse).record(*(AuditEntry(
            run_id=context.run_id, step="ingest", crm=crm, entity=table, started_at=started_at, ended_at=ended_at,
            status="failed", error_class=error_class, details=details) for table in tables))
    except Exception as audit_exc:  # noqa: BLE001 - the load's own error is the one to raise
        context.log.warning(f"could not write the audit entry of the failed {crm} load: {type(audit_exc).__name__}")
def _dead_letter_rejects(context: dg.AssetExecutionContext, warehouse: Warehouse, report: SyncReport) -> None:
    """Records left out of their page become record-level dead letters; the rest of the run stands."""
    queue = DeadLetterQueue(warehouse)
    for table, resource in report.resources.items():
        if resource.rejects:
            queue.add_records(report.crm, table, resource.rejects, context.run_id)
            kinds = sorted({r.kind for r in resource.rejects})
            context.log.warning(f"{report.crm} {table}: {len(resource.rejects)} record(s) not loaded "
                                f"({', '.join(kinds)}); kept as dead letters, replay with `sync-platform dlq replay`")


def _rows_written(warehouse: Warehouse, crm: str, table: str, load_ids: list[str]) -> int:
    """Distinct rows this load wrote: merge stamps each with the load id, however often it was read."""
    if not load_ids or not warehouse.table_exists(dataset(crm), table):
        return 0
    marks = ", ".join("?" for _ in load_ids)
    rows = warehouse.query(f"SELECT count(*) FROM {dataset(crm)}.{table} WHERE _dlt_load_id IN ({marks})", load_ids)
    return int(rows[0][0])


def _enrich(result: dg.MaterializeResult, crm: str, warehouse: Warehouse, report: SyncReport,
            before: dict[str, tuple[int, int]], elapsed: float, load_ids: list[str]) -> dg.MaterializeResult:
    table = result.asset_key.path[-1]  # type: ignore[union-attr]
    total_before, deleted_before = before.get(table, (0, 0))
    total_after, deleted_after = _table_counts(warehouse, crm, table)
    resource = report.resource(table)
    inserted = max(0, total_after - total_before)
    newly_deleted = max(0, deleted_after - deleted_before)
    written = _rows_written(warehouse, crm, table, load_ids)
    updated = max(0, written - inserted - newly_deleted - resource.reread)
    high_water = _high_water(warehouse, crm, table) if total_after else None
    newest = resource.newest_change or high_water
    lag = (datetime.now(UTC) - newest).total_seconds() if newest else None
    metadata = dict(result.metadata or {})
    metadata.update({
        "rows_loaded": dg.MetadataValue.int(resource.rows),
        "rows_extracted": resource.rows,
        "rows_written": written,
        "rows_inserted": inserted,
        "rows_updated": updated,
        "rows_deleted": newly_deleted,
        "rows_reread_in_look_back": resource.reread,
        "rows_rejected": len(resource.rejects),
        "read_mode": resource.read_mode,
        "deletes_visible": resource.deletes_visible,
        "rows_total": total_after,
        "pages": resource.pages,
        "step_elapsed_s": round(elapsed, 3),
        "crm_records_per_s": round(report.records_per_second(), 1),
        "cursor_high_water": high_water.isoformat() if high_water else "none",
        "lag_s": round(lag, 1) if lag is not None else -1.0,
        **{f"source_{k}": v for k, v in report.stats.as_metadata().items()},  # errors_by_kind: the taxonomy
        "dead_letters_pending": DeadLetterQueue(warehouse).depth(crm),
    })
    return dg.MaterializeResult(asset_key=result.asset_key, metadata=metadata)


raw_assets = [build_crm_assets(crm) for crm in CRMS if load_sync_config().crm(crm).enabled]


@dg.definitions
def defs() -> dg.Definitions:
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return dg.Definitions(assets=raw_assets, resources={"dlt": DagsterDltResource()})
