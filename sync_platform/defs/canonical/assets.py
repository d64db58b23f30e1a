"""Canonical entities: every CRM's raw rows mapped by YAML, identities resolved, quality-gated.

Each asset reads the raw tables, builds the entity (``sync_platform.canonical_build``) and judges
it with pandera. Rejected rows always go to ``ops.quarantine``. The ``quality_gate`` check is
**blocking**: when the rejected share exceeds ``quality.max_rejected_share`` (default 1 %), the
canonical table is *not* replaced (the previous good one stays), the check fails with ERROR so
downstream assets do not run, and a ``canonical_blast_radius_exceeded`` alert event is emitted.
Below the threshold the good rows replace the table and the check warns.

Every run writes one ``ops.audit_log`` entry per entity (step ``canonical``): rows read, inserted,
updated and deleted against the previous table, rejected, and per column how many rows changed.
"""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from sync_platform.audit import AuditEntry, AuditLog
from sync_platform.audit_changes import KEY, ChangeSummary, pii_columns, summarize_changes
from sync_platform.canonical_build import ENTITIES, build_entity
from sync_platform.config import load_sync_config
from sync_platform.erasure import ErasureList
from sync_platform.mapping.identity import duplicate_report
from sync_platform.mapping.loader import Mapping, load_mappings
from sync_platform.quality.validate import ValidationOutcome
from sync_platform.quarantine import keys_of_latest_run, quarantine_rows, record
from sync_platform.security.canonical_fields import protect, sensitive_columns
from sync_platform.security.encryption import decrypt_frame
from sync_platform.security.redaction import mask_value
from sync_platform.warehouse import Warehouse

from ..ingest.assets import WAREHOUSE_POOL

ALERT = "canonical_blast_radius_exceeded"
SAMPLE_ROWS = 20


def _key(entity: str) -> dg.AssetKey:
    return dg.AssetKey(["canonical", ENTITIES[entity][0]])


def _failure_sample(failures: pl.DataFrame) -> str:
    """A markdown table of failure cases with personal data masked (for the check's metadata)."""
    lines = ["| source | id | rule | column | value |", "|---|---|---|---|---|"]
    for row in failures.head(SAMPLE_ROWS).iter_rows(named=True):
        lines.append(f"| {row['source_system']} | {row['source_id']} | {row['rule']} | {row['column']} | "
                     f"{mask_value(row['column'], row['value'])} |")
    return "\n".join(lines)


def build_canonical_asset(entity: str) -> dg.AssetsDefinition:
    table, link = ENTITIES[entity]
    key = _key(entity)
    mappings = load_mappings()  # a malformed mapping fails here, naming file and key, before any data moves
    deps = [dg.AssetKey(["raw", crm, m.entity(entity).table]) for crm, m in sorted(mappings.items())]
    if link is not None:
        deps.append(_key(link[0]))

    @dg.asset(
        key=key, deps=deps, group_name="canonical", kinds={"polars", "pandera", "duckdb"}, pool=WAREHOUSE_POOL,
        tags={"layer": "canonical"}, owners=["team:data"],
        description=f"Canonical {entity}s from every CRM: mapped by data/mappings/*.yaml, golden ids, "
                    "pandera-validated; rejected rows quarantined.",
        check_specs=[dg.AssetCheckSpec(
            "quality_gate", asset=key, blocking=True,
            description="Rejected share above quality.max_rejected_share blocks downstream and keeps the "
                        "previous table; any rejected row warns.")],
    )
    def canonical_entity(context: dg.AssetExecutionContext):
        warehouse = Warehouse.from_env()
        started_at = datetime.now(UTC)
        current = load_mappings()
        raw = {}
        for crm, mapping in sorted(current.items()):
            source = mapping.entity(entity).table
            if warehouse.table_exists(f"raw_{crm}", source):
                raw[crm] = warehouse.read_frame(f"SELECT * FROM raw_{crm}.{source}")
        parent = parent_quarantined = None
        if link is not None and warehouse.table_exists("canonical", ENTITIES[link[0]][0]):
            parent = warehouse.read_frame(f"SELECT * FROM canonical.{ENTITIES[link[0]][0]}")
            parent_quarantined = keys_of_latest_run(warehouse, link[0])
        erased = ErasureList.load(warehouse)  # PII: erased people never re-enter canonical data
        build = build_entity(entity, raw, current, parent, parent_quarantined, erased)
        erased.remember_caught(warehouse)
        outcome = build.outcome
        threshold = load_sync_config().quality.max_rejected_share
        blocked = outcome.rejected_share > threshold
        quarantined = record(warehouse, quarantine_rows(outcome.failures, entity, build.versions, context.run_id))
        changes = ChangeSummary()
        if not blocked:
            changes = _changes(warehouse, entity, table, current, outcome)
            # PII: sensitive columns are encrypted after validation, just before the write
            warehouse.write_frame(protect(outcome.good, entity, current), "canonical", table)
        else:
            context.log.error(f"ALERT {ALERT}: {outcome.rejected.height} of {outcome.rows} {entity} rows rejected "
                              f"({outcome.rejected_share:.1%} > {threshold:.1%}); canonical.{table} kept as it was")
            yield dg.AssetObservation(asset_key=key, metadata={
                "alert": ALERT, "severity": "error", "rejected_share": outcome.rejected_share,
                "threshold": threshold, "rule_counts": outcome.rule_counts()})
        AuditLog(warehouse).record(AuditEntry(
            run_id=context.run_id, step="canonical", crm=None, entity=entity, started_at=started_at,
            ended_at=datetime.now(UTC), records_read=outcome.rows, inserted=changes.inserted, updated=changes.updated,
            deleted=changes.deleted, rejected=outcome.rejected.height, changed_fields=changes.changed_fields,
            status="blocked" if blocked else "success", error_class=ALERT if blocked else None,
            details={"rejected_share": round(outcome.rejected_share, 5), "threshold": threshold,
                     "rule_counts": outcome.rule_counts(), "mapping_versions": build.versions,
                     "sources": sorted(raw), **changes.details()}))
        yield dg.MaterializeResult(asset_key=key, metadata={
            "gate": "blocked: previous table kept" if blocked else "passed",
            "rows_inserted": changes.inserted,
            "rows_updated": changes.updated,
            "rows_deleted": changes.deleted,
            "changed_fields": changes.changed_fields,
            "rows_in": outcome.rows,
            "rows_good": outcome.good.height,
            "rows_rejected": outcome.rejected.height,
            "rejected_share": round(outcome.rejected_share, 5),
            "threshold": threshold,
            "quarantined_cases": quarantined,
            "rule_counts": outcome.rule_counts(),
            "mapping_versions": build.versions,
            "ignored_source_columns": {crm: m.ignored_count for crm, m in build.mapped.items()},
            "conversion_failures": {crm: m.failure_counts() for crm, m in build.mapped.items()},
            "sources": sorted(raw),
        })
        yield dg.AssetCheckResult(
            asset_key=key, check_name="quality_gate", passed=outcome.rejected.height == 0,
            severity=dg.AssetCheckSeverity.ERROR if blocked else dg.AssetCheckSeverity.WARN,
            metadata={"rejected_share": round(outcome.rejected_share, 5), "threshold": threshold,
                      "rows_rejected": outcome.rejected.height, "rule_counts": outcome.rule_counts(),
                      "failure_cases": dg.MetadataValue.md(_failure_sample(outcome.failures)),
                      "table_failures": outcome.table_failures.height})

    return canonical_entity


def _changes(warehouse: Warehouse, entity: str, table: str, mappings: dict[str, Mapping],
             outcome: ValidationOutcome) -> ChangeSummary:
    """What replacing ``canonical.<table>`` with the good rows changes (PII and sensitive fields hashed)."""
    # the stored table holds ciphertext (a fresh nonce per write): compare in clear, or every
    # sensitive value would look changed on every run
    previous = (decrypt_frame(warehouse.read_frame(f"SELECT * FROM canonical.{table}"),
                              sensitive_columns(entity, mappings))
                if warehouse.table_exists("canonical", table) else None)
    sensitive = {f for m in mappings.values() for f in m.sensitive_fields(entity)}
    return summarize_changes(previous, outcome.good, pii=pii_columns(entity, sensitive),
                             rejected=outcome.rejected.select(KEY) if outcome.rejected.height else None)


DUPLICATE_SOURCES = {"contacts": "customer_id", "accounts": "account_id"}


@dg.asset(
    key=["canonical", "duplicates"], deps=[_key("contact"), _key("account")], group_name="canonical",
    kinds={"polars", "duckdb"}, pool=WAREHOUSE_POOL, tags={"layer": "canonical"}, owners=["team:data"],
)
def canonical_duplicates(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Who is in here twice, inside one CRM or across CRMs: the first question of an integration audit.

    Groups live records by golden id (contacts: normalized email; accounts: domain, then name) and
    writes ``canonical.duplicate_groups`` (one row per group) and ``canonical.duplicate_summary``.
    """
    warehouse = Warehouse.from_env()
    groups, summaries, counts = [], [], {}
    for table, id_column in DUPLICATE_SOURCES.items():
        if not warehouse.table_exists("canonical", table):
            continue
        report = duplicate_report(warehouse.read_frame(f"SELECT * FROM canonical.{table}"), id_column)
        groups.append(report.groups.select(
            pl.lit(table).alias("entity"), pl.col(id_column).alias("golden_id"), "records",
            pl.col("systems").list.join("+").alias("systems"), "within_crm", "cross_crm"))
        summaries.append(report.summary.with_columns(pl.lit(table).alias("entity")))
        counts[table] = report.counts()
    all_groups = pl.concat(groups) if groups else pl.DataFrame()
    summary = pl.concat(summaries) if summaries else pl.DataFrame()
    if not all_groups.is_empty():
        warehouse.write_frame(all_groups, "canonical", "duplicate_groups")
        warehouse.write_frame(summary, "canonical", "duplicate_summary")
    lines = ["| entity | scope | groups | records |", "|---|---|---|---|"]
    lines += [f"| {r['entity']} | {r['scope']} | {r['groups']} | {r['records']} |" for r in summary.iter_rows(named=True)]
    return dg.MaterializeResult(metadata={
        "duplicate_groups": all_groups.height,
        "cross_crm_groups": int(all_groups["cross_crm"].sum()) if all_groups.height else 0,
        "within_crm_groups": int(all_groups["within_crm"].sum()) if all_groups.height else 0,
        "by_scope": counts,
        "summary": dg.MetadataValue.md("\n".join(lines)),
    })


@dg.definitions
def defs() -> dg.Definitions:
    assets = [*(build_canonical_asset(entity) for entity in ENTITIES), canonical_duplicates]
    job = dg.define_asset_job("canonical_build", selection=dg.AssetSelection.groups("canonical"),
                              description="Rebuild the canonical model from the raw tables.")
    return dg.Definitions(assets=assets, jobs=[job])
