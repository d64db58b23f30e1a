"""The activity probe after every sync, and the sensor that tells a frozen cursor from an idle CRM.

``["probe", crm]`` sits in the CRM's raw group, so every ``<crm>_sync`` run ends with it: a
random sample of live records re-read by id and compared with the warehouse. The
``zero_change_alerts`` sensor raises ``zero_change_runs_with_source_activity`` when the last N
successful syncs of an object saw no change while the probe found records that changed without
their cursor moving; an idle CRM (nothing found) never pages anyone. It resolves by itself once
syncs see changes again or the probe comes back clean.
"""

from datetime import datetime

import dagster as dg

from sync_platform.core.config import CRMS, load_sync_config
from sync_platform.core.errors import CrmRequestError
from sync_platform.core.warehouse import Warehouse
from sync_platform.defs.monitor.sensors import run_monitor
from sync_platform.defs.resources import WAREHOUSE_POOL, SyncConfigResource, WarehouseResource
from sync_platform.ops.alerts import AlertBook, Finding
from sync_platform.reconcile.cycle import targets
from sync_platform.reconcile.probe import probe

FINDING = "zero_change_runs_with_source_activity"


def probe_key(crm: str) -> dg.AssetKey:
    return dg.AssetKey(["probe", crm])


def build_probe_asset(crm: str) -> dg.AssetsDefinition:
    wanted = targets(crm)

    @dg.asset(
        key=probe_key(crm),
        deps=[dg.AssetKey(["raw", crm, t.table]) for t in wanted],
        group_name=f"raw_{crm}",
        kinds={"polars", "duckdb"},
        owners=["team:data"],
        pool=WAREHOUSE_POOL,
        tags={"crm": crm, "layer": "reconcile"},
        description=f"A random sample of {crm} records re-read by id after each sync: changes the cursor "
        "missed (content changed, cursor did not) show up here within one interval.",
    )
    def activity_probe(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
    ) -> dg.MaterializeResult:
        config = sync_config.load()
        size = config.reconcile.probe_sample
        try:
            results, report = probe(crm, config.crm(crm), warehouse.get(), size)
        except CrmRequestError as exc:
            # the sync itself landed; a probe that cannot reach the CRM must not fail it
            context.log.warning(f"{crm} probe failed: {exc}")
            return dg.MaterializeResult(metadata={"status": "failed", "error_kind": exc.kind.value})
        return dg.MaterializeResult(
            metadata={
                "status": "ok",
                "sample_size": size,
                "sampled": {r.table: r.sampled for r in results},
                "differing": {r.table: r.differing for r in results},
                "differing_total": sum(r.differing for r in results),
                "example_ids": {r.table: r.example_ids for r in results if r.example_ids},
                "requests": report.stats.requests,
            }
        )

    return activity_probe


def _metadata_value(event, name: str):
    value = event.asset_materialization.metadata.get(name) if event.asset_materialization else None
    return getattr(value, "value", value)


def _zero_change_streak(instance: dg.DagsterInstance, key: dg.AssetKey, runs: int) -> bool:
    """The last ``runs`` materializations of a raw asset all changed nothing."""
    records = instance.fetch_materializations(key, limit=runs).records
    if len(records) < runs:
        return False
    changed = 0
    for record in records:
        for name in ("rows_inserted", "rows_updated", "rows_deleted"):
            changed += int(_metadata_value(record, name) or 0)
    return changed == 0


def zero_change_findings(instance: dg.DagsterInstance, crm: str, runs: int) -> list[Finding]:
    latest = instance.fetch_materializations(probe_key(crm), limit=1).records
    if not latest:
        return []
    differing = _metadata_value(latest[0], "differing") or {}
    examples = _metadata_value(latest[0], "example_ids") or {}
    found = []
    for target in targets(crm):
        missed = int(differing.get(target.table, 0))
        if missed and _zero_change_streak(instance, dg.AssetKey(["raw", crm, target.table]), runs):
            found.append(
                Finding(
                    key=f"zero_change:{crm}:{target.table}",
                    severity="error",
                    finding=FINDING,
                    message=f"{crm}.{target.table}: the last {runs} syncs saw 0 changes "
                    f"while the probe found {missed} "
                    f"sampled records changed without their cursor ({target.crm_cursor}) moving: the cursor "
                    "looks frozen. Run reconciliation to repair.",
                    crm=crm,
                    asset=target.asset_path,
                    details={
                        "runs": runs,
                        "probe_differing": missed,
                        "example_ids": examples.get(target.table, []),
                    },
                )
            )
    return found


@dg.sensor(
    name="zero_change_alerts",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when syncs keep seeing 0 changes while the probe sees activity (a frozen cursor).",
)
def zero_change_alerts(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.SkipReason:
    config = sync_config.load()

    def body(store: Warehouse, now: datetime) -> str:
        book = AlertBook(store)
        summary = []
        for crm in CRMS:
            if not config.crm(crm).enabled:
                continue
            outcome = book.report(
                f"zero_change:{crm}:",
                zero_change_findings(context.instance, crm, config.reconcile.zero_change_runs),
            )
            summary.append(f"{crm}: raised {len(outcome.raised)}, resolved {len(outcome.resolved)}")
        return "; ".join(summary) or "no CRM enabled"

    return run_monitor(context, warehouse, body)


@dg.definitions
def defs() -> dg.Definitions:
    crms = [crm for crm in CRMS if load_sync_config().crm(crm).enabled]
    return dg.Definitions(assets=[build_probe_asset(crm) for crm in crms], sensors=[zero_change_alerts])
