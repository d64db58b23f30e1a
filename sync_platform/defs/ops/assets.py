"""Housekeeping of the platform's own tables: audit-log and raw-history retention, run daily.

``audit.retention_days`` in ``data/sync.yaml`` (default 400) says how long the audit trail is
kept, and ``history.raw_days`` (default 30) how long a superseded raw version is; the asset deletes
what is older and audits its own run (step ``retention``), so even the purge leaves a trace.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from sync_platform.core.config import CRMS
from sync_platform.defs.resources import WAREHOUSE_POOL, SyncConfigResource, WarehouseResource
from sync_platform.ingest.history import RawHistory
from sync_platform.ops.audit import AuditEntry, AuditLog

RETENTION_CRON = "30 3 * * *"  # daily, 03:30 UTC: away from the quarter-hour syncs


@dg.asset(
    key=["ops", "audit_retention"],
    group_name="ops",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    tags={"layer": "ops"},
    owners=["team:data"],
)
def audit_retention(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.MaterializeResult:
    """Delete audit-log entries older than ``audit.retention_days``: the trail is kept as long as the
    policy says, and no longer."""
    config = sync_config.load()
    days = config.audit.retention_days
    started_at = datetime.now(UTC)
    store = warehouse.get()
    log = AuditLog(store)
    purged = log.purge_older_than(days, now=started_at)
    history = RawHistory(store)
    versions = {crm: history.purge(crm, config.history.raw_days, now=started_at) for crm in CRMS}
    cutoff = started_at - timedelta(days=days)
    log.record(
        AuditEntry(
            run_id=context.run_id,
            step="retention",
            crm=None,
            entity="audit_log",
            started_at=started_at,
            ended_at=datetime.now(UTC),
            deleted=purged,
            details={
                "retention_days": days,
                "cutoff": cutoff.isoformat(),
                "raw_versions_purged": versions,
                "raw_days": config.history.raw_days,
            },
        )
    )
    return dg.MaterializeResult(
        metadata={
            "rows_purged": purged,
            "retention_days": days,
            "cutoff": cutoff.isoformat(),
            "raw_versions_purged": versions,
            "raw_days": config.history.raw_days,
        }
    )


@dg.definitions
def defs() -> dg.Definitions:
    job = dg.define_asset_job(
        "audit_retention",
        selection=dg.AssetSelection.assets(audit_retention),
        description="Purge audit-log entries older than audit.retention_days.",
    )
    schedule = dg.ScheduleDefinition(
        name="audit_retention_schedule",
        job=job,
        cron_schedule=RETENTION_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily audit-log retention (needs no credentials, so it starts running).",
    )
    return dg.Definitions(assets=[audit_retention], jobs=[job], schedules=[schedule])
