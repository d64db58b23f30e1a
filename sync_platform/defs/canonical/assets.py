"""Canonical entities: every CRM's raw rows mapped by YAML, identities resolved, quality-gated.

Each asset reads the raw tables, builds the entity (``sync_platform.canonical.build``) and judges
it with pandera. Rejected rows always go to ``ops.quarantine``. The ``quality_gate`` check is
**blocking**: when the rejected share exceeds ``quality.max_rejected_share`` (default 1 %), the
canonical table is *not* replaced (the previous good one stays), the check fails with ERROR so
downstream assets do not run, and a ``canonical_blast_radius_exceeded`` alert event is emitted.
Below the threshold the good rows replace the table and the check warns.

The ``change_impact`` check is blocking too: a build that moves a field, a null rate, a value
distribution or a CRM's row count beyond ``quality.change_impact`` (sync.yaml) against the
published table is not published either, and raises a ``canonical_change_impact_exceeded`` alert
per limit exceeded (resolved by the next build that passes), unless a person approved the entity's
next build (``sync-platform canonical approve``). Each published build is kept for
``sync-platform canonical restore`` (the ``canonical_restore`` job does the same from the UI).

Every run writes one ``ops.audit_log`` entry per entity (step ``canonical``): rows read, inserted,
updated and deleted against the previous table, rejected, per column how many rows changed, and
the change impact.
"""

import dagster as dg
import polars as pl

from sync_platform.canonical.history import BuildHistory, UnknownBuild
from sync_platform.canonical.identity import duplicate_report
from sync_platform.canonical.mapping.loader import load_mappings
from sync_platform.canonical.model import ENTITY_TABLES
from sync_platform.canonical.publish import IMPACT_SCOPE, approve_mapping, failure_sample, publish_entity
from sync_platform.canonical.shadow_report import shadow_markdown
from sync_platform.core.sql import ident, sql
from sync_platform.defs.resources import WAREHOUSE_POOL, SyncConfigResource, WarehouseResource
from sync_platform.ops.alerts import AlertBook


def _key(entity: str) -> dg.AssetKey:
    return dg.AssetKey(["canonical", ENTITY_TABLES[entity][0]])


def build_canonical_asset(entity: str) -> dg.AssetsDefinition:
    _, link = ENTITY_TABLES[entity]
    key = _key(entity)
    mappings = load_mappings()  # a malformed mapping fails here, naming file and key, before any data moves
    deps = [dg.AssetKey(["raw", crm, m.entity(entity).table]) for crm, m in sorted(mappings.items())]
    if link is not None:
        deps.append(_key(link[0]))

    @dg.asset(
        key=key,
        deps=deps,
        group_name="canonical",
        kinds={"polars", "pandera", "duckdb"},
        pool=WAREHOUSE_POOL,
        tags={"layer": "canonical"},
        owners=["team:data"],
        description=f"Canonical {entity}s from every CRM: mapped by data/mappings/*.yaml, golden ids, "
        "pandera-validated; rejected rows quarantined.",
        check_specs=[
            dg.AssetCheckSpec(
                "quality_gate",
                asset=key,
                blocking=True,
                description="Rejected share above quality.max_rejected_share blocks downstream and keeps the "
                "previous table; any rejected row warns.",
            ),
            dg.AssetCheckSpec(
                "change_impact",
                asset=key,
                blocking=True,
                description="A build changing more than quality.change_impact allows against the published "
                "table (values the raw data did not change, null rates, distributions, row counts) is not "
                "published and blocks downstream, unless approved.",
            ),
        ],
    )
    def canonical_entity(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
    ):
        config = sync_config.load()
        store = warehouse.get()
        result = publish_entity(
            store, entity, load_mappings(), config.quality, context.run_id, config.history.canonical_builds
        )
        if result.quality_blocked:
            context.log.error(result.alert_message())
            yield dg.AssetObservation(asset_key=key, metadata=result.alert_details())
        findings = result.impact_findings()
        for finding in findings:
            context.log.error(f"ALERT {finding.finding}: {finding.message}")
        if result.impact is not None:  # measured: raise what is over the limits, resolve what is not
            AlertBook(store).report(f"{IMPACT_SCOPE}{entity}:", findings)
        metadata = result.metadata()
        if result.rollouts and result.impact is not None:
            metadata["shadow"] = dg.MetadataValue.md(
                shadow_markdown(result.rollouts, result.impact, result.shadow_pending)
            )
            metadata["shadow_report"] = dg.MetadataValue.path(str(result.shadow_report))
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name="quality_gate",
            passed=result.outcome.rejected.height == 0,
            severity=dg.AssetCheckSeverity.ERROR if result.quality_blocked else dg.AssetCheckSeverity.WARN,
            metadata={
                **result.check_metadata(),
                "failure_cases": dg.MetadataValue.md(failure_sample(result.outcome.failures)),
            },
        )
        impact = result.impact
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name="change_impact",
            passed=not (result.impact_blocked or result.held or result.shadow_pending),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "gate": result.gate,
                "breaches": [b.as_dict() for b in impact.breaches] if impact else [],
                "measured": impact is not None,  # not measured when the quality gate already blocked
                "impact": dg.MetadataValue.md(impact.markdown() if impact else "not measured"),
            },
        )

    return canonical_entity


DUPLICATE_SOURCES = {"contacts": "customer_id", "accounts": "account_id"}


@dg.asset(
    key=["canonical", "duplicates"],
    deps=[_key("contact"), _key("account")],
    group_name="canonical",
    kinds={"polars", "duckdb"},
    pool=WAREHOUSE_POOL,
    tags={"layer": "canonical"},
    owners=["team:data"],
)
def canonical_duplicates(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Who is in here twice, inside one CRM or across CRMs: the first question of an integration audit.

    Groups live records by golden id (contacts: normalized email; accounts: domain, then name) and
    writes ``canonical.duplicate_groups`` (one row per group) and ``canonical.duplicate_summary``.
    """
    store = warehouse.get()
    groups, summaries, counts = [], [], {}
    for table, id_column in DUPLICATE_SOURCES.items():
        if not store.table_exists("canonical", table):
            continue
        rows = store.read_frame(sql("SELECT * FROM {table}", table=ident("canonical", table)))
        report = duplicate_report(rows, id_column)
        groups.append(
            report.groups.select(
                pl.lit(table).alias("entity"),
                pl.col(id_column).alias("golden_id"),
                "records",
                pl.col("systems").list.join("+").alias("systems"),
                "within_crm",
                "cross_crm",
            )
        )
        summaries.append(report.summary.with_columns(pl.lit(table).alias("entity")))
        counts[table] = report.counts()
    all_groups = pl.concat(groups) if groups else pl.DataFrame()
    summary = pl.concat(summaries) if summaries else pl.DataFrame()
    if not all_groups.is_empty():
        store.write_frame(all_groups, "canonical", "duplicate_groups")
        store.write_frame(summary, "canonical", "duplicate_summary")
    lines = ["| entity | scope | groups | records |", "|---|---|---|---|"]
    lines += [
        f"| {r['entity']} | {r['scope']} | {r['groups']} | {r['records']} |"
        for r in summary.iter_rows(named=True)
    ]
    return dg.MaterializeResult(
        metadata={
            "duplicate_groups": all_groups.height,
            "cross_crm_groups": int(all_groups["cross_crm"].sum()) if all_groups.height else 0,
            "within_crm_groups": int(all_groups["within_crm"].sum()) if all_groups.height else 0,
            "by_scope": counts,
            "summary": dg.MetadataValue.md("\n".join(lines)),
        }
    )


class RestoreConfig(dg.Config):
    build_id: str
    """The kept build to put back (``sync-platform canonical builds`` lists them)."""


@dg.op(pool=WAREHOUSE_POOL, tags={"layer": "canonical"})
def restore_canonical_build(
    context: dg.OpExecutionContext,
    config: RestoreConfig,
    warehouse: WarehouseResource,
    sync_config: SyncConfigResource,
) -> dg.Output[str]:
    """Put a kept canonical build back as the published table: a materialization of that table."""
    history = BuildHistory(warehouse.get(), sync_config.load().history.canonical_builds)
    try:
        restored = history.restore(config.build_id, context.run_id, by=f"dagster run {context.run_id}")
    except UnknownBuild as exc:
        raise dg.Failure(description=str(exc)) from None
    context.log_event(
        dg.AssetMaterialization(
            asset_key=["canonical", restored.table_name],
            metadata={
                "gate": f"restored from {config.build_id}",
                "build_id": restored.build_id,
                "restored_from": config.build_id,
                "rows": restored.row_count,
                "mapping_versions": restored.mapping_versions,
            },
        )
    )
    return dg.Output(restored.build_id)


@dg.job(description="Put a kept canonical build back (config: build_id); audited.")
def canonical_restore() -> None:
    restore_canonical_build()


class MappingApprovalConfig(dg.Config):
    crm: str
    """salesforce, hubspot or dynamics."""
    version: int
    """The mapping file's version to let go live (the one built in shadow)."""
    reason: str
    """Why its changes are intended: kept in the audit trail."""


@dg.op(pool=WAREHOUSE_POOL, tags={"layer": "canonical"})
def approve_mapping_version(
    context: dg.OpExecutionContext, config: MappingApprovalConfig, warehouse: WarehouseResource
) -> str:
    """Grant the one-shot approval ``sync-platform mapping approve`` grants."""
    try:
        approval = approve_mapping(
            warehouse.get(),
            load_mappings(),
            config.crm,
            config.version,
            config.reason,
            by=f"dagster run {context.run_id}",
        )
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from None
    context.log.info(
        f"approval {approval.id}: {config.crm} mapping v{config.version} goes live on the next build"
    )
    return approval.id


@dg.job(description="Let a mapping version built in shadow go live (config: crm, version, reason); audited.")
def mapping_approve() -> None:
    approve_mapping_version()


@dg.definitions
def defs() -> dg.Definitions:
    assets = [*(build_canonical_asset(entity) for entity in ENTITY_TABLES), canonical_duplicates]
    job = dg.define_asset_job(
        "canonical_build",
        selection=dg.AssetSelection.groups("canonical"),
        description="Rebuild the canonical model from the raw tables.",
    )
    return dg.Definitions(assets=assets, jobs=[job, canonical_restore, mapping_approve])
