"""Reconciliation assets: does the warehouse still agree with each CRM, and if not, repair it.

``["reconcile", crm, object]`` lists the CRM (ids, cursor, hash of the mapped fields) and
classifies every difference with the raw table: missing, extra, stale, diverged. Each carries a
``drift_threshold`` check (ERROR above the configured share, WARN on any drift) and raises or
resolves alerts for drift and for cursor anomalies (the frozen-timestamp incident is
``content_changed_cursor_unchanged``). ``["remediate", crm]`` re-fetches exactly the differing ids,
marks ids the CRM no longer has as deleted, re-reconciles and records every repair in the audit log.
"""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from sync_platform.core.config import CRMS, SyncConfig, load_sync_config
from sync_platform.core.warehouse import Warehouse
from sync_platform.defs.resources import WAREHOUSE_POOL, SyncConfigResource, WarehouseResource
from sync_platform.ops.alerts import AlertBook, Finding
from sync_platform.ops.audit import AuditEntry, AuditLog
from sync_platform.reconcile.cross_crm import ACROSS_CRMS, COMPARED, linked_conflicts
from sync_platform.reconcile.cycle import TargetResult, evaluate, listing_dataset, now, run_cycle, targets
from sync_platform.reconcile.history import drift_row, read_history, record_drift
from sync_platform.reconcile.remediation import remediate
from sync_platform.reconcile.report import EntityReport, report_markdown, write_report

ERROR_ANOMALIES = {"content_changed_cursor_unchanged", "cursor_moved_backwards"}


def reconcile_key(crm: str, table: str) -> dg.AssetKey:
    return dg.AssetKey(["reconcile", crm, table])


def _findings(result: TargetResult) -> list[Finding]:
    t = result.target
    scope = f"reconcile:{t.crm}:{t.table}:"
    found = []
    drift = sum(result.diff.counts.values())
    if drift:
        found.append(
            Finding(
                key=f"{scope}drift",
                severity="error" if result.status == "error" else "warning",
                finding="drift_above_threshold" if result.status == "error" else "drift",
                message=f"{t.crm}.{t.table}: {drift} of {result.diff.source_records} records differ "
                f"({result.diff.drift_share:.2%}, threshold {result.threshold:.2%})",
                crm=t.crm,
                asset=t.asset_path,
                details={"counts": result.diff.counts, "sample_ids": result.sample_ids()},
            )
        )
    for anomaly in result.anomalies:
        found.append(
            Finding(
                key=f"{scope}{anomaly.name}",
                severity="error" if anomaly.name in ERROR_ANOMALIES else "warning",
                finding=anomaly.name,
                message=f"{t.crm}.{t.table}: {anomaly.name}: {anomaly.count} records. {anomaly.detail}",
                crm=t.crm,
                asset=t.asset_path,
                details={"count": anomaly.count, "example_ids": anomaly.example_ids},
            )
        )
    return found


def _metadata(result: TargetResult) -> dict:
    diff = result.diff
    top = result.top_fields
    return {
        "source_records": diff.source_records,
        "warehouse_records": diff.warehouse_records,
        **{f"{cls}": int(diff.counts.get(cls, 0)) for cls in ("missing", "extra", "stale", "diverged")},
        "drift_pct": round(100 * diff.drift_share, 4),
        "threshold_pct": round(100 * result.threshold, 4),
        "status": result.status,
        "compared_fields": list(result.target.fields),
        "top_fields": dg.MetadataValue.md(
            "| field | differing |\n|---|---|\n"
            + "\n".join(f"| {r[0]} | {r[1]} |" for r in top.head(10).rows())
        )
        if not top.is_empty()
        else "none",
        "sample_ids": result.sample_ids(),
        "anomalies": {a.name: a.count for a in result.anomalies},
        "unreadable": len(result.unreadable),
        "unreadable_ids": result.unreadable[:10],
    }


def _check(result: TargetResult, key: dg.AssetKey) -> dg.AssetCheckResult:
    drift = sum(result.diff.counts.values())
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="drift_threshold",
        passed=drift == 0,
        severity=dg.AssetCheckSeverity.ERROR if result.status == "error" else dg.AssetCheckSeverity.WARN,
        metadata={
            "drift_pct": round(100 * result.diff.drift_share, 4),
            "threshold_pct": round(100 * result.threshold, 4),
            "differing": drift,
            "counts": result.diff.counts,
            "unreadable": len(result.unreadable),
        },
    )


def _cycle(
    crm: str, run_id: str, warehouse: Warehouse, config: SyncConfig, only: list[str] | None = None
) -> tuple[list[TargetResult], dict]:
    rc = config.reconcile
    started = now()
    results, report = run_cycle(
        crm,
        config.crm(crm),
        run_id,
        warehouse,
        rc.threshold,
        {"identical_share": rc.identical_cursor_share},
        only=only,
        engine=rc.engine,
    )
    book = AlertBook(warehouse)
    for result in results:
        book.report(f"reconcile:{crm}:{result.target.table}:", _findings(result))
    AuditLog(warehouse).record(
        *(
            AuditEntry(
                run_id=run_id,
                step="reconcile",
                crm=crm,
                entity=r.target.table,
                started_at=started,
                ended_at=r.checked_at,
                records_read=r.diff.source_records,
                status="success" if r.status != "error" else "partial",
                details={
                    "counts": r.diff.counts,
                    "drift_share": r.diff.drift_share,
                    "threshold": r.threshold,
                },
            )
            for r in results
        )
    )
    return results, report.stats.as_metadata()


def build_reconcile_assets(crm: str) -> dg.AssetsDefinition:
    wanted = targets(crm)
    specs = [
        dg.AssetSpec(
            key=reconcile_key(crm, t.table),
            deps=[dg.AssetKey(["raw", crm, t.table])],
            group_name="reconcile",
            kinds={"polars", "duckdb"},
            owners=["team:data"],
            tags={"layer": "reconcile"},
            description=f"{crm} {t.table} listed at the source and compared with the warehouse: missing, "
            "extra, stale and diverged records, drift share, cursor anomalies.",
        )
        for t in wanted
    ]
    checks = [
        dg.AssetCheckSpec(
            "drift_threshold",
            asset=spec.key,
            description="ERROR when drift exceeds the configured share; WARN on any drift.",
        )
        for spec in specs
    ]

    @dg.multi_asset(
        name=f"reconcile_{crm}", specs=specs, check_specs=checks, pool=WAREHOUSE_POOL, can_subset=True
    )
    def reconcile_crm(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
    ) -> Iterator:
        selected = [key.path[-1] for key in context.selected_asset_keys]
        results, requests = _cycle(crm, context.run_id, warehouse.get(), sync_config.load(), only=selected)
        for result in results:
            key = reconcile_key(crm, result.target.table)
            yield dg.MaterializeResult(
                asset_key=key, metadata={**_metadata(result), "listing_requests": requests}
            )
            yield _check(result, key)

    return reconcile_crm


def build_remediation_asset(crm: str) -> dg.AssetsDefinition:
    wanted = targets(crm)

    @dg.asset(
        key=["remediate", crm],
        deps=[reconcile_key(crm, t.table) for t in wanted],
        group_name="reconcile",
        kinds={"dlt", "duckdb"},
        owners=["team:data"],
        pool=WAREHOUSE_POOL,
        tags={"layer": "reconcile"},
        check_specs=[
            dg.AssetCheckSpec(
                "drift_after_remediation",
                asset=["remediate", crm],
                description="Every repaired id agrees with the CRM afterwards.",
            )
        ],
    )
    def remediate_crm(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
    ) -> Iterator:
        """Re-fetch exactly the ids the last reconciliation found different, then re-reconcile."""
        store, config = warehouse.get(), sync_config.load()
        started = now()
        outcome = remediate(crm, store, config.crm(crm))
        context.log.info(f"{crm}: re-fetched {outcome.fetched}, marked deleted {outcome.marked_deleted}")
        results, requests = (
            _cycle(crm, context.run_id, store, config, only=list(outcome.requested))
            if outcome.touched
            else ([], {})
        )
        remaining = {r.target.table: sum(r.diff.counts.values()) for r in results}
        AuditLog(store).record(
            *(
                AuditEntry(
                    run_id=context.run_id,
                    step="remediate",
                    crm=crm,
                    entity=table,
                    started_at=started,
                    ended_at=now(),
                    records_read=outcome.requested.get(table, 0),
                    updated=outcome.fetched.get(table, 0),
                    deleted=outcome.marked_deleted.get(table, 0),
                    status="success" if not remaining.get(table) else "partial",
                    details={
                        "requested": outcome.requested.get(table, 0),
                        "remaining_drift": remaining.get(table, 0),
                    },
                )
                for table in outcome.requested
            )
        )
        repaired_left = {t: n for t, n in outcome.still_different(results).items() if n}
        yield dg.MaterializeResult(
            metadata={
                "requested": outcome.requested,
                "fetched": outcome.fetched,
                "marked_deleted": outcome.marked_deleted,
                "remaining_drift": remaining,
                "repaired_ids_still_different": repaired_left,
                "requests": requests,
            }
        )
        yield dg.AssetCheckResult(
            check_name="drift_after_remediation",
            passed=not repaired_left,
            metadata={"repaired_ids_still_different": repaired_left},
        )

    return remediate_crm


CROSS_CRM_KEY = dg.AssetKey(["reconcile", "across_crms"])


@dg.asset(
    key=CROSS_CRM_KEY,
    deps=[dg.AssetKey(["canonical", "contacts"]), dg.AssetKey(["canonical", "accounts"])],
    group_name="reconcile",
    kinds={"polars", "duckdb"},
    owners=["team:data"],
    pool=WAREHOUSE_POOL,
    tags={"layer": "reconcile"},
    check_specs=[
        dg.AssetCheckSpec(
            "systems_agree",
            asset=CROSS_CRM_KEY,
            description="Warns when linked golden records carry conflicting values.",
        )
    ],
)
def reconcile_across_crms(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
):
    """Do all systems agree? The same customer or company in several CRMs, field by field.

    Golden records held by two or more CRMs are compared on their descriptive fields (names,
    phone, title, lifecycle stage, opt-out; company name, industry, country, phone). Conflicts go
    to ``reconcile.cross_crm_conflicts`` (golden id, field, systems: no values) and one point per
    entity to the drift history with direction ``across_crms``.
    """
    store = warehouse.get()
    threshold = sync_config.load().reconcile.cross_crm_threshold
    checked_at = now()
    outcomes = [o for o in (linked_conflicts(store, e) for e in COMPARED) if o is not None]
    frames = [o.conflicts.with_columns(pl.lit(o.entity).alias("entity")) for o in outcomes]
    conflicts = pl.concat(frames) if frames else pl.DataFrame()
    if not conflicts.is_empty():
        store.write_frame(
            conflicts.with_columns(pl.lit(checked_at).alias("checked_at")), "reconcile", "cross_crm_conflicts"
        )
    elif store.table_exists("reconcile", "cross_crm_conflicts"):
        store.query("DELETE FROM reconcile.cross_crm_conflicts")
    record_drift(
        store,
        [
            drift_row(
                o.diff,
                "all",
                o.entity,
                threshold,
                checked_at=checked_at,
                run_id=context.run_id,
                direction=ACROSS_CRMS,
            )
            for o in outcomes
        ],
    )
    summary = {
        o.entity: {
            "linked": o.linked,
            "conflicting": o.diff.differing,
            "by_field": dict(o.field_counts().iter_rows()),
        }
        for o in outcomes
    }
    yield dg.MaterializeResult(
        metadata={
            "linked_golden_records": {o.entity: o.linked for o in outcomes},
            "conflicting_golden_records": {o.entity: o.diff.differing for o in outcomes},
            "conflicts_by_field": {o.entity: dict(o.field_counts().iter_rows()) for o in outcomes},
            "threshold_pct": round(100 * threshold, 3),
        }
    )
    yield dg.AssetCheckResult(
        check_name="systems_agree",
        asset_key=CROSS_CRM_KEY,
        passed=not any(o.diff.differing for o in outcomes),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"summary": summary},
    )


def build_report_asset(crms: list[str]) -> dg.AssetsDefinition:
    deps = [reconcile_key(crm, t.table) for crm in crms for t in targets(crm)]
    deps += [dg.AssetKey(["remediate", crm]) for crm in crms]
    deps.append(CROSS_CRM_KEY)

    @dg.asset(
        key=["reconcile", "report"],
        deps=deps,
        group_name="reconcile",
        kinds={"html", "polars"},
        owners=["team:data"],
        pool=WAREHOUSE_POOL,
        tags={"layer": "reconcile"},
    )
    def reconcile_report(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
    ) -> dg.MaterializeResult:
        """Do all systems agree? Counts per class, drift vs threshold, top fields, sample ids and the trend.

        Re-evaluates the latest listings against the raw tables as they are now (after any repair),
        so the report shows the current state while the chart shows the history, spike and repair.
        Written as markdown here and as a standalone HTML page under ``data/reports/``.
        """
        store = warehouse.get()
        rc = sync_config.load().reconcile
        entries = []
        for crm in crms:
            for target in targets(crm):
                if store.table_exists(listing_dataset(crm), target.table):
                    entries.append(
                        evaluate(
                            store,
                            target,
                            rc.threshold(crm, target.table),
                            {"identical_share": rc.identical_cursor_share},
                            rc.engine,
                        ).to_report()
                    )
        for outcome in (linked_conflicts(store, e) for e in COMPARED):
            if outcome is not None:
                entries.append(
                    EntityReport(
                        "all",
                        outcome.entity,
                        outcome.diff,
                        rc.cross_crm_threshold,
                        outcome.field_counts(),
                        direction=ACROSS_CRMS,
                    )
                )
        history = read_history(store)
        checked_at = now()
        path = write_report(entries, history, checked_at)
        context.log.info(f"reconciliation report: {path}")
        return dg.MaterializeResult(
            metadata={
                "report": dg.MetadataValue.md(report_markdown(entries, history, checked_at)),
                "html": dg.MetadataValue.path(str(path)),
                "entities": len(entries),
                "differing": sum(e.diff.differing for e in entries),
                "status": max((e.status for e in entries), key=["ok", "warn", "error"].index, default="ok"),
            }
        )

    return reconcile_report


RECONCILE_SELECTION = dg.AssetSelection.groups("reconcile") - dg.AssetSelection.key_prefixes(["remediate"])


@dg.definitions
def defs() -> dg.Definitions:
    config = load_sync_config()
    crms = [crm for crm in CRMS if config.crm(crm).enabled]
    reconcile_assets = [build_reconcile_assets(crm) for crm in crms]
    remediation_assets = [build_remediation_asset(crm) for crm in crms]
    rc = config.reconcile
    reconcile_job = dg.define_asset_job(
        "reconcile",
        selection=RECONCILE_SELECTION,
        description="List every CRM and compare it with the warehouse (no repair).",
    )
    repair_job = dg.define_asset_job(
        "reconcile_and_repair",
        selection=dg.AssetSelection.groups("reconcile"),
        description="Reconcile, re-fetch every differing record, re-reconcile.",
    )
    remediate_job = dg.define_asset_job(
        "remediate",
        selection=dg.AssetSelection.key_prefixes(["remediate"])
        | dg.AssetSelection.assets(["reconcile", "report"]),
        description="Re-fetch the records the last reconciliation found different "
        "(launch after reviewing it).",
    )
    report_job = dg.define_asset_job(
        "reconcile_report",
        selection=dg.AssetSelection.assets(CROSS_CRM_KEY, ["reconcile", "report"]),
        description="Compare linked golden records across CRMs and write the reconciliation report.",
    )
    schedule = dg.ScheduleDefinition(
        name="reconcile_daily",
        cron_schedule=rc.schedule_cron,
        execution_timezone="UTC",
        job=repair_job if rc.auto_remediate else reconcile_job,
    )
    return dg.Definitions(
        assets=[*reconcile_assets, *remediation_assets, reconcile_across_crms, build_report_asset(crms)],
        jobs=[reconcile_job, repair_job, remediate_job, report_job],
        schedules=[schedule],
    )
