"""``["monitor", "sync_metrics"]``: throughput, lag, errors, dead letters and API budget per CRM object.

A time series twice over: appended to ``ops.sync_metrics`` for SQL, and as numeric metadata per
CRM on each materialization so the Dagster UI plots it over time. Scheduled every 15 minutes.
"""

from datetime import UTC, datetime

import dagster as dg

from sync_platform.defs.monitor.targets import raw_paths
from sync_platform.defs.resources import WAREHOUSE_POOL, WarehouseResource
from sync_platform.monitor.metrics import (
    dead_letter_depths,
    per_crm_totals,
    record_sync_metrics,
)
from sync_platform.monitor.run_history import collect_sync_metrics

METRICS_CRON = "*/15 * * * *"


def _table(metrics) -> str:
    lines = [
        (
            "| crm | object | synced | records/s | lag s | requests | "
            "retries | errors | dead letters | budget left |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics:
        synced = f"{m.synced_at:%Y-%m-%d %H:%M:%S}" if m.synced_at else "never"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(m.errors_by_kind.items())) or "0"
        lines.append(
            f"| {m.crm} | {m.object} | {synced} | "
            f"{m.records_per_s if m.records_per_s is not None else '-'} | "
            f"{m.lag_s if m.lag_s is not None else '-'} | {m.requests if m.requests is not None else '-'} | "
            f"{m.retries if m.retries is not None else '-'} | {kinds} | {m.dead_letters_pending} | "
            f"{m.api_budget_remaining if m.api_budget_remaining is not None else '-'} |"
        )
    return "\n".join(lines)


@dg.asset(
    key=["monitor", "sync_metrics"],
    group_name="monitor",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    owners=["team:data"],
    tags={"layer": "monitor"},
)
def sync_metrics(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per CRM and object, from the newest raw materializations: records/s, lag, errors by kind, dead-letter
    depth, requests and remaining API budget; appended to ops.sync_metrics and plotted per CRM in the UI."""
    now = datetime.now(UTC)
    store = warehouse.get()
    metrics = collect_sync_metrics(context.instance, raw_paths(), now, dead_letter_depths(store))
    written = record_sync_metrics(store, metrics, now)
    metadata: dict = {"objects": written, "objects_synced": sum(m.synced_at is not None for m in metrics)}
    for crm, totals in per_crm_totals(metrics).items():
        metadata.update(
            {
                f"{crm}_{name}": dg.MetadataValue.float(float(value))
                if isinstance(value, float)
                else dg.MetadataValue.int(int(value))
                for name, value in totals.items()
            }
        )
    metadata["by_object"] = dg.MetadataValue.md(_table(metrics))
    return dg.MaterializeResult(metadata=metadata)


@dg.definitions
def defs() -> dg.Definitions:
    job = dg.define_asset_job(
        "sync_metrics_job", selection=[sync_metrics], description="Record sync metrics of every CRM object."
    )
    schedule = dg.ScheduleDefinition(
        name="sync_metrics_schedule",
        job=job,
        cron_schedule=METRICS_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Sync metrics every 15 minutes (a time series in ops.sync_metrics).",
    )
    return dg.Definitions(assets=[sync_metrics], jobs=[job], schedules=[schedule])
