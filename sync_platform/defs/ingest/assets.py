"""Raw CRM assets: one ``@dlt_assets`` per CRM, metadata every run, loud failures.

Every materialization reports rows extracted/inserted/updated/deleted (0 explicitly when
nothing changed), pages, requests, retries, 429s, elapsed time, records/s, the cursor
high-water mark and the lag (now minus the newest source change seen). A request that fails
for good becomes a dead letter and fails the run: the dlt load and its cursor never happen,
so the next run starts from the same place. A record left out of its page becomes a dead letter
as its object's read ends, before dlt loads and commits the cursor: if that write fails, so does
the run, and the cursor stays. A record stamped past the CRM's clock loads, but raises a
``future_cursor`` alert and is kept out of the cursor. Every run, good or failed, writes one
``ops.audit_log`` entry per CRM object (step ``ingest``).
"""

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
from dagster_dlt import DagsterDltResource, dlt_assets

from sync_platform.canonical.mapping.loader import load_mappings
from sync_platform.core.config import CRMS, SyncConfig, load_sync_config
from sync_platform.core.errors import RejectedRecord
from sync_platform.core.settings import load_settings
from sync_platform.core.warehouse import Warehouse
from sync_platform.defs.ingest.translator import CrmTranslator
from sync_platform.defs.resources import WAREHOUSE_POOL, SyncConfigResource, WarehouseResource
from sync_platform.ingest.connections import build_source
from sync_platform.ingest.history import RawHistory
from sync_platform.ingest.load_report import (
    failed_load_audit_entries,
    future_cursor_findings,
    future_cursor_scope,
    load_audit_entry,
    load_metrics,
    table_counts,
)
from sync_platform.ingest.mass_change import MassChange, mass_changes
from sync_platform.ingest.pipeline import build_pipeline, crm_error, described_pipeline, reset_cursors
from sync_platform.ingest.sources.common import SyncReport
from sync_platform.ops.alerts import AlertBook
from sync_platform.ops.audit import AuditLog
from sync_platform.ops.dead_letters import DeadLetterQueue
from sync_platform.ops.holds import Holds


class IngestConfig(dg.Config):
    full_refresh: bool = False
    """Reset the selected objects' saved cursors and re-read them whole (merge keeps it idempotent;
    other objects, rows and soft-delete history stay)."""


def build_crm_assets(crm: str) -> dg.AssetsDefinition:
    cfg = load_sync_config().crm(crm)
    translator = CrmTranslator(crm, cfg.owners)

    @dlt_assets(
        dlt_source=build_source(crm, cfg, placeholder=True),
        dlt_pipeline=described_pipeline(
            crm, Warehouse.from_settings(load_settings())
        ),  # specs only; runs build their own
        name=f"{crm}_raw",
        dagster_dlt_translator=translator,
        pool=WAREHOUSE_POOL,
    )
    def crm_raw_assets(
        context: dg.AssetExecutionContext,
        dlt: DagsterDltResource,
        config: IngestConfig,
        warehouse: WarehouseResource,
        sync_config: SyncConfigResource,
    ) -> Iterator[dg.MaterializeResult]:
        store = warehouse.get()
        report = SyncReport(crm, dead_letters=_dead_letter_sink(context, store, crm))
        source = build_source(crm, sync_config.load().crm(crm), report=report)
        tables = [key.path[-1] for key in context.selected_asset_keys]
        before = {t: table_counts(store, crm, t) for t in tables}
        started_at = datetime.now(UTC)
        started = time.monotonic()
        pipeline = build_pipeline(crm, store)
        try:
            # dlt opens the DuckDB file to restore state, load and commit the cursor: in our turn only
            with store.turn():
                refreshed = reset_cursors(pipeline, tables) if config.full_refresh else []
                results = list(dlt.run(context=context, dlt_source=source, dlt_pipeline=pipeline))
        except Exception as exc:
            cause = crm_error(exc)
            _audit_failure(context, store, crm, tables, started_at, exc, cause)
            if cause is None:
                raise
            DeadLetterQueue(store).add_failure(cause, tables, context.run_id)
            raise dg.Failure(
                description=str(cause),
                metadata={
                    "error_kind": cause.kind.value,
                    "attempts": cause.attempts,
                    "dead_letters": len(tables),
                    **report.stats.as_metadata(),
                },
            ) from None
        elapsed = time.monotonic() - started
        kept = _record_history(context, store, crm, tables, sync_config.load())
        load_ids = list(pipeline.last_trace.last_load_info.loads_ids) if pipeline.last_trace else []
        entries = []
        for result in results:
            table = result.asset_key.path[-1]  # type: ignore[union-attr]
            metadata = {
                **(result.metadata or {}),
                **load_metrics(store, report, table, before[table], elapsed, load_ids, started_at),
                "full_refresh": config.full_refresh,  # re-read whole, cursor reset; rows and tombstones kept
                "cursor_reset": table in refreshed,
                "history_versions": kept.get(table),  # prior versions kept (None: not recorded this run)
            }
            entries.append(load_audit_entry(metadata, crm, table, context.run_id, started_at))
            yield dg.MaterializeResult(asset_key=result.asset_key, metadata=metadata)
        AuditLog(store).record(*entries)
        _report_future_stamps(store, report, [entry.entity for entry in entries])

    return crm_raw_assets


def _audit_failure(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    crm: str,
    tables: list[str],
    started_at: datetime,
    exc: BaseException,
    cause,
) -> None:
    """Audit a failed load per object. Best effort: it must never hide the failure it records."""
    try:
        AuditLog(warehouse).record(
            *failed_load_audit_entries(crm, tables, context.run_id, started_at, exc, cause)
        )
    except Exception as audit_exc:  # noqa: BLE001 - the load's own error is the one to raise
        context.log.warning(
            f"could not write the audit entry of the failed {crm} load: {type(audit_exc).__name__}"
        )


def _record_history(
    context: dg.AssetExecutionContext, warehouse: Warehouse, crm: str, tables: list[str], config: SyncConfig
) -> dict[str, int]:
    """Keep the versions this load wrote, and hold what a CRM-side mass change would corrupt.

    The data has landed: a failure here is told, and the next run's catch-up records what this one
    could not."""
    try:
        limits = config.mass_change
        lowest = min([limits.max_changed_share, *limits.thresholds.get(crm, {}).values()])  # type: ignore[call-overload]
        recorded = RawHistory(warehouse).record(crm, tables, diff_above=lowest)
    except Exception as exc:  # noqa: BLE001 - the load stands; the history catches up next run
        context.log.warning(f"{crm}: prior versions not recorded this run ({type(exc).__name__}: {exc})")
        return {}
    for changes in (mass_changes(r, config.mass_change) for r in recorded):
        if changes:
            _hold_mass_change(context, warehouse, changes)
    return {r.table: r.versions for r in recorded}


def _hold_mass_change(
    context: dg.AssetExecutionContext, warehouse: Warehouse, changes: list[MassChange]
) -> None:
    """Hold the canonical entity the object feeds, and raise one ``mass_change`` alert per field."""
    first = changes[0]
    entity = _entity_of(first.crm, first.table)
    hold = None
    if entity is not None:
        hold = Holds(warehouse).place(
            entity,
            f"mass change in {first.crm} {first.table}: " + ", ".join(c.field for c in changes),
            {
                "alerts": [c.alert_key for c in changes],
                "changes": [c.finding(entity, None).details for c in changes],
            },
            context.run_id,
        )
    book = AlertBook(warehouse)
    for change in changes:
        finding = change.finding(entity, hold.id if hold else None)
        context.log.error(f"ALERT {finding.finding}: {finding.message}")
        book.report(change.alert_key, [finding])


def _entity_of(crm: str, table: str) -> str | None:
    """The canonical entity a raw table feeds, per the CRM's mapping."""
    mapping = load_mappings().get(crm)
    if mapping is None:
        return None
    return next((e for e, spec in mapping.entities.items() if spec.table == table), None)


def _report_future_stamps(warehouse: Warehouse, report: SyncReport, tables: list[str]) -> None:
    """Raise (or, once no read sees one, resolve) the ``future_cursor`` alert of each object read;
    scoped per object, so a run of some objects leaves the others' alerts alone."""
    book = AlertBook(warehouse)
    for table in tables:
        book.report(future_cursor_scope(report.crm, table), future_cursor_findings(report, table))


def _dead_letter_sink(context: dg.AssetExecutionContext, warehouse: Warehouse, crm: str):
    """Records left out of their page become record-level dead letters, written as their object's
    read ends (inside dlt's extraction, in this step's warehouse turn): a failed write fails the
    run before dlt can commit the cursor past them. The rest of the run stands."""
    queue = DeadLetterQueue(warehouse)

    def sink(table: str, rejects: list[RejectedRecord]) -> None:
        queue.add_records(crm, table, rejects, context.run_id)
        kinds = sorted({r.kind for r in rejects})
        context.log.warning(
            f"{crm} {table}: {len(rejects)} record(s) not loaded ({', '.join(kinds)}); "
            "kept as dead letters, replay with `sync-platform dlq replay`"
        )

    return sink


raw_assets = [build_crm_assets(crm) for crm in CRMS if load_sync_config().crm(crm).enabled]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=raw_assets)
