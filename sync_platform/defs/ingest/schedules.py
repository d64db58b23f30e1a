"""Jobs and schedules of the ingest domain, one set per CRM, from ``data/sync.yaml``.

``<crm>_sync`` runs the incremental sync and is scheduled at the CRM's interval (1 minute to
24 hours); ``<crm>_full_refresh`` resets the selected objects' cursors and re-reads them whole; ``sync_all``
runs all three (the demo's job). Schedules start stopped: turn them on in the UI once the
CRM credentials are configured.
"""

import dagster as dg

from sync_platform.core.config import CRMS, load_sync_config


def _selection(crm: str) -> dg.AssetSelection:
    # freshness checks run on their own sensor, not as an extra step of every sync
    return dg.AssetSelection.groups(f"raw_{crm}").without_checks()


@dg.definitions
def defs() -> dg.Definitions:
    config = load_sync_config()
    jobs, schedules = [], []
    enabled = [crm for crm in CRMS if config.crm(crm).enabled]
    for crm in enabled:
        cfg = config.crm(crm)
        sync = dg.define_asset_job(
            f"{crm}_sync",
            selection=_selection(crm),
            tags={"crm": crm},
            description=f"Incremental sync of {crm} (every {cfg.schedule_minutes} min).",
        )
        full = dg.define_asset_job(
            f"{crm}_full_refresh",
            selection=_selection(crm),
            tags={"crm": crm, "full_refresh": "true"},
            config={"ops": {f"{crm}_raw": {"config": {"full_refresh": True}}}},
            description=(
                f"Reset {crm}'s saved cursors and re-read the selected objects whole "
                "(rows and tombstones kept)."
            ),
        )
        jobs += [sync, full]
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{crm}_sync_schedule",
                job=sync,
                cron_schedule=cfg.cron,
                execution_timezone="UTC",
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description=f"{crm} incremental sync every {cfg.schedule_minutes} minute(s).",
            )
        )
    selection = dg.AssetSelection.groups(*[f"raw_{crm}" for crm in enabled]).without_checks()
    jobs.append(
        dg.define_asset_job("sync_all", selection=selection, description="Incremental sync of every CRM.")
    )
    return dg.Definitions(jobs=jobs, schedules=schedules)
