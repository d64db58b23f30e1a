"""Write-back as an asset: each materialization of ``outbound/deliveries`` sends the pending
changes of ``outbound.changes`` to the CRMs and keeps their answers (``sync_platform/outbound``).

Job ``outbound_sync``; schedule ``outbound_sync_schedule`` (every 5 minutes, off until turned on
in the UI, so nothing is written into a CRM before someone decides it should be).
"""

import dagster as dg

from sync_platform.canonical.mapping.loader import load_mappings
from sync_platform.core.config import CRMS
from sync_platform.defs.resources import WAREHOUSE_POOL, SyncConfigResource, WarehouseResource
from sync_platform.ingest.sources.http import RequestStats
from sync_platform.outbound.deliver import deliver
from sync_platform.outbound.verify import report_not_visible, verify_writes
from sync_platform.outbound.writers import make_writer


@dg.asset(
    key=["outbound", "deliveries"],
    group_name="outbound",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    tags={"layer": "outbound"},
    owners=["team:data"],
)
def outbound_deliveries(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.MaterializeResult:
    """Send every pending outbound change to the CRMs it targets, once; refusals to the dead letters."""
    config = sync_config.load()
    stats: dict[str, RequestStats] = {}

    def writer_for(crm: str):
        stats[crm] = RequestStats()
        return make_writer(crm, config.crm(crm), stats[crm])

    store = warehouse.get()
    report = deliver(store, load_mappings(), config.outbound, writer_for, context.run_id)
    checked = verify_writes(store, list(CRMS))  # earlier writes, read back by the syncs since
    report_not_visible(store, checked)
    metadata = {
        **report.as_metadata(),
        "calls": {crm: s.requests for crm, s in stats.items()},
        "writes_confirmed": checked.confirmed,
        "writes_not_read_back_yet": checked.unverified,
        "writes_not_visible": sum(len(ids) for ids in checked.not_visible.values()),
    }
    if report.failed:
        context.log.error(f"write-back could not reach {sorted(report.failed)}; their changes stay pending")
        raise dg.Failure(
            description="; ".join(f"{crm}: {why}" for crm, why in sorted(report.failed.items())),
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)


@dg.definitions
def defs() -> dg.Definitions:
    job = dg.define_asset_job(
        "outbound_sync",
        selection=dg.AssetSelection.groups("outbound"),
        description="Write the pending outbound.changes into the CRMs (idempotent; refusals: dead letters).",
    )
    schedule = dg.ScheduleDefinition(
        name="outbound_sync_schedule",
        job=job,
        cron_schedule="*/5 * * * *",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    return dg.Definitions(assets=[outbound_deliveries], jobs=[job], schedules=[schedule])
