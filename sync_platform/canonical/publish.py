"""Build, gate and publish one canonical entity: what the canonical asset decides and reports.

Reads every CRM's raw table (and the parent entity's canonical table), builds the entity
(:func:`~sync_platform.canonical.build.build_entity`), quarantines the rejected rows, and replaces
``canonical.<table>`` only when both gates pass:

- the **quality gate** (blast radius): the rejected share is within ``quality.max_rejected_share``;
- the **change-impact gate** (:mod:`~sync_platform.canonical.impact`): the build does not move a
  field, a null rate, a distribution or a CRM's row count beyond ``quality.change_impact``, unless
  a person approved this entity's next build (``sync-platform canonical approve``).

Blocked, the previous table stays published. Published, the table is also kept in the build
history (:mod:`~sync_platform.canonical.history`) for restore. Either way the decision is written to
the audit log (step ``canonical``), with per-column change counts and the impact figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from sync_platform.canonical.build import EntityBuild, build_entity
from sync_platform.canonical.changes import KEY, ChangeSummary, pii_columns, summarize_changes
from sync_platform.canonical.erasure import ErasureList
from sync_platform.canonical.history import Build, BuildHistory
from sync_platform.canonical.impact import IMPACT_ALERT, Breach, ImpactReport, measure_impact
from sync_platform.canonical.mapping.loader import Mapping
from sync_platform.canonical.model import ENTITY_TABLES
from sync_platform.canonical.protection import protect, sensitive_columns
from sync_platform.canonical.quality.validate import ValidationOutcome
from sync_platform.canonical.shadow_report import SHADOW, write_shadow_report
from sync_platform.core.config import QualityConfig
from sync_platform.core.sql import ident, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.alerts import AlertBook, Finding
from sync_platform.ops.approvals import Approval, Approvals
from sync_platform.ops.audit import AuditEntry, AuditLog
from sync_platform.ops.holds import Hold, Holds
from sync_platform.ops.quarantine import keys_of_latest_run, quarantine_rows, record
from sync_platform.security.encryption import decrypt_frame
from sync_platform.security.redaction import mask_value

BLAST_RADIUS_ALERT = "canonical_blast_radius_exceeded"
SAMPLE_ROWS = 20
IMPACT_SCOPE = "change_impact:"
HELD = "canonical_held"


def approval_scope(entity: str) -> str:
    """What ``sync-platform canonical approve <entity>`` grants: the entity's next blocked build."""
    return f"canonical:{entity}"


@dataclass
class Publication:
    """One entity's build and the gate's decision on it."""

    entity: str
    table: str
    build: EntityBuild
    threshold: float
    sources: list[str]
    quarantined: int = 0
    changes: ChangeSummary = field(default_factory=ChangeSummary)
    impact: ImpactReport | None = None
    approval: Approval | None = None  # the person's approval that let an impact-blocked build through
    published: Build | None = None
    hold: Hold | None = None  # an open hold on the entity (a CRM-side mass change): nothing publishes
    previous: pl.DataFrame | None = field(default=None, repr=False)  # the published table, in clear
    rollouts: dict[str, int] = field(default_factory=dict)  # CRM -> mapping version rolled out (shadow)
    shadow_pending: list[str] = field(default_factory=list)  # rollouts waiting for `mapping approve`
    mapping_approvals: list[Approval] = field(default_factory=list)  # used by this build
    waived: set[str] = field(default_factory=set)  # CRMs whose breaches an approved mapping version covers
    shadow_report: Path | None = None

    @property
    def outcome(self) -> ValidationOutcome:
        return self.build.outcome

    @property
    def quality_blocked(self) -> bool:
        return self.outcome.rejected_share > self.threshold

    @property
    def breaches(self) -> list[Breach]:
        """The impact limits exceeded, but for CRMs whose approved mapping version explains them."""
        return [b for b in self.impact.breaches if b.crm not in self.waived] if self.impact else []

    @property
    def impact_blocked(self) -> bool:
        return bool(self.breaches) and self.approval is None and not self.shadow_pending

    @property
    def held(self) -> bool:
        return self.hold is not None

    @property
    def blocked(self) -> bool:
        return self.quality_blocked or self.impact_blocked or self.held or bool(self.shadow_pending)

    @property
    def gate(self) -> str:
        if self.quality_blocked:
            return "blocked: quality (previous table kept)"
        if self.hold is not None:
            return f"blocked: held by {self.hold.id} ({self.hold.reason}; previous table kept)"
        if self.shadow_pending:
            waiting = ", ".join(f"{crm} v{self.rollouts[crm]}" for crm in self.shadow_pending)
            return f"blocked: shadow build of {waiting} awaits approval (previous table kept)"
        if self.impact_blocked:
            return "blocked: change impact (previous table kept)"
        if self.approval is not None:
            return f"passed: change impact approved ({self.approval.id})"
        if self.mapping_approvals:
            return "passed: mapping approved (" + ", ".join(a.scope for a in self.mapping_approvals) + ")"
        if self.rollouts:
            return "passed: mapping rolled out within the change-impact limits"
        return "passed"

    def impact_findings(self) -> list[Finding]:
        """One alert per limit exceeded, while this entity's builds stay blocked (none once one passes)."""
        if not (self.impact_blocked or self.shadow_pending) or self.impact is None:
            return []
        asset = f"canonical/{self.table}"
        return [
            Finding(
                key=f"{IMPACT_SCOPE}{self.entity}:{b.crm}:{b.field or '*'}:{b.metric}",
                severity="error",
                finding=IMPACT_ALERT,
                message=f"{b.message}; canonical.{self.table} kept as it was, downstream stopped "
                f"(approve with `sync-platform canonical approve {self.entity} --reason ...`)",
                crm=b.crm,
                asset=asset,
                details=b.as_dict(),
            )
            for b in self.breaches
        ]

    def alert_message(self) -> str:
        o = self.outcome
        return (
            f"ALERT {BLAST_RADIUS_ALERT}: {o.rejected.height} of {o.rows} {self.entity} rows rejected "
            f"({o.rejected_share:.1%} > {self.threshold:.1%}); canonical.{self.table} kept as it was"
        )

    def alert_details(self) -> dict[str, Any]:
        return {
            "alert": BLAST_RADIUS_ALERT,
            "severity": "error",
            "rejected_share": self.outcome.rejected_share,
            "threshold": self.threshold,
            "rule_counts": self.outcome.rule_counts(),
        }

    def metadata(self) -> dict[str, Any]:
        o, mapped = self.outcome, self.build.mapped
        return {
            "gate": self.gate,
            "build_id": self.published.build_id if self.published else None,
            "change_impact": self.impact.metadata() if self.impact else {},
            "rollouts": self.rollouts,
            "shadow_report": str(self.shadow_report) if self.shadow_report else None,
            "rows_inserted": self.changes.inserted,
            "rows_updated": self.changes.updated,
            "rows_deleted": self.changes.deleted,
            "changed_fields": self.changes.changed_fields,
            "rows_in": o.rows,
            "rows_good": o.good.height,
            "rows_rejected": o.rejected.height,
            "rejected_share": round(o.rejected_share, 5),
            "threshold": self.threshold,
            "quarantined_cases": self.quarantined,
            "rule_counts": o.rule_counts(),
            "mapping_versions": self.build.versions,
            "ignored_source_columns": {crm: m.ignored_count for crm, m in mapped.items()},
            "conversion_failures": {crm: m.failure_counts() for crm, m in mapped.items()},
            "sources": self.sources,
        }

    def check_metadata(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "rejected_share": round(o.rejected_share, 5),
            "threshold": self.threshold,
            "rows_rejected": o.rejected.height,
            "rule_counts": o.rule_counts(),
            "table_failures": o.table_failures.height,
        }

    def audit_entry(self, run_id: str, started_at: datetime) -> AuditEntry:
        o = self.outcome
        return AuditEntry(
            run_id=run_id,
            step="canonical",
            crm=None,
            entity=self.entity,
            started_at=started_at,
            ended_at=datetime.now(UTC),
            records_read=o.rows,
            inserted=self.changes.inserted,
            updated=self.changes.updated,
            deleted=self.changes.deleted,
            rejected=o.rejected.height,
            changed_fields=self.changes.changed_fields,
            status="blocked" if self.blocked else "success",
            error_class=BLAST_RADIUS_ALERT
            if self.quality_blocked
            else (
                HELD if self.held else (IMPACT_ALERT if self.impact_blocked or self.shadow_pending else None)
            ),
            details={
                "gate": self.gate,
                "build_id": self.published.build_id if self.published else None,
                "approval": (
                    {"id": self.approval.id, "by": self.approval.approved_by, "reason": self.approval.reason}
                    if self.approval
                    else None
                ),
                "change_impact": self.impact.metadata() if self.impact else {},
                "rollouts": self.rollouts,
                "mapping_approvals": [
                    {"scope": a.scope, "id": a.id, "by": a.approved_by, "reason": a.reason}
                    for a in self.mapping_approvals
                ],
                "rejected_share": round(o.rejected_share, 5),
                "threshold": self.threshold,
                "rule_counts": o.rule_counts(),
                "mapping_versions": self.build.versions,
                "sources": self.sources,
                **self.changes.details(),
            },
        )


def read_raw(warehouse: Warehouse, entity: str, mappings: dict[str, Mapping]) -> dict[str, pl.DataFrame]:
    """Each CRM's raw table of ``entity``, where it has been synced."""
    raw = {}
    for crm, mapping in sorted(mappings.items()):
        source = mapping.entity(entity).table
        if warehouse.table_exists(f"raw_{crm}", source):
            raw[crm] = warehouse.read_frame(sql("SELECT * FROM {table}", table=ident(f"raw_{crm}", source)))
    return raw


def evaluate(
    warehouse: Warehouse,
    entity: str,
    mappings: dict[str, Mapping],
    quality: QualityConfig,
    *,
    dry_run: bool = False,
) -> Publication:
    """Build ``entity`` and measure it against the published table, without publishing anything.

    ``dry_run`` writes nothing at all (``sync-platform mapping check --impact``)."""
    table, link = ENTITY_TABLES[entity]
    raw = read_raw(warehouse, entity, mappings)
    parent = parent_quarantined = None
    if link is not None and warehouse.table_exists("canonical", ENTITY_TABLES[link[0]][0]):
        parent = warehouse.read_frame(
            sql("SELECT * FROM {table}", table=ident("canonical", ENTITY_TABLES[link[0]][0]))
        )
        parent_quarantined = keys_of_latest_run(warehouse, link[0])
    erased = ErasureList.load(warehouse)  # PII: erased people never re-enter canonical data
    build = build_entity(entity, raw, mappings, parent, parent_quarantined, erased)
    if not dry_run:
        erased.remember_caught(warehouse)
    result = Publication(entity, table, build, quality.max_rejected_share, sorted(raw))
    if not result.quality_blocked:
        result.previous = _previous(warehouse, entity, table, mappings)
        pii = _pii(entity, mappings)
        result.impact = measure_impact(
            entity, result.previous, build.outcome.good, quality.change_impact, pii
        )
        result.rollouts = rollouts(warehouse, result.previous, build, mappings)
    return result


def rollouts(
    warehouse: Warehouse, previous: pl.DataFrame | None, build: EntityBuild, mappings: dict[str, Mapping]
) -> dict[str, int]:
    """CRMs whose mapping is being rolled out: its version differs from the one the published rows
    carry, or its file says ``rollout: shadow`` and that version was never approved."""
    if previous is None or previous.is_empty() or "mapping_version" not in previous.columns:
        return {}
    live = dict(previous.group_by("source_system").agg(pl.col("mapping_version").max()).iter_rows())
    approvals = Approvals(warehouse)
    out = {}
    for crm, version in build.versions.items():
        if crm not in live:
            continue
        changed = live[crm] != version
        flagged = mappings[crm].rollout == "shadow" and not approvals.ever(mapping_scope(crm, version))
        if changed or flagged:
            out[crm] = version
    return out


def mapping_scope(crm: str, version: int) -> str:
    """What ``sync-platform mapping approve <crm> <version>`` grants."""
    return f"mapping:{crm}:{version}"


def approve_mapping(
    warehouse: Warehouse,
    mappings: dict[str, Mapping],
    crm: str,
    version: int,
    reason: str,
    by: str | None = None,
) -> Approval:
    """Let ``crm``'s mapping ``version`` go live on the next build (the CLI's and the job's door).

    Raises ValueError when that version is not the one in the mapping file (an approval of a
    version nobody will build would wait forever) or the reason is empty.
    """
    mapping = mappings.get(crm)
    if mapping is None or mapping.version != version:
        have = f"version {mapping.version}" if mapping else "no mapping"
        raise ValueError(f"{crm} has {have} in its mapping file, not {version}")
    return Approvals(warehouse).grant(mapping_scope(crm, version), reason, approved_by=by)


def publish_entity(
    warehouse: Warehouse,
    entity: str,
    mappings: dict[str, Mapping],
    quality: QualityConfig,
    run_id: str,
    keep_builds: int = 5,
) -> Publication:
    """Build ``entity``, quarantine rejected rows, publish unless a gate blocks, keep the build, audit.

    A mapping being rolled out is built in shadow (``canonical_shadow.<table>``, with a diff report
    under ``data/reports/``) and goes live by itself when its change impact is within the limits,
    else once its version is approved."""
    started_at = datetime.now(UTC)
    result = evaluate(warehouse, entity, mappings, quality)
    build = result.build
    result.quarantined = record(
        warehouse, quarantine_rows(build.outcome.failures, entity, build.versions, run_id)
    )
    held = Holds(warehouse).open(entity)
    result.hold = held[0] if held else None
    if result.impact is not None and not result.held:
        _decide(warehouse, result, mappings, run_id)
        if result.rollouts:
            shadow = protect(build.outcome.good, entity, mappings)
            warehouse.write_frame(shadow, SHADOW, result.table)
            result.shadow_report = write_shadow_report(
                entity, result.table, result.rollouts, result.impact, result.shadow_pending
            )
        if not result.blocked:
            pii = _pii(entity, mappings)
            result.changes = _changes(result.previous, build.outcome, pii)
            # PII: sensitive columns are encrypted after validation, just before the write
            published = protect(build.outcome.good, entity, mappings)
            warehouse.write_frame(published, "canonical", result.table)
            result.published = BuildHistory(warehouse, keep_builds).record(
                entity, published, run_id, build.versions
            )
    AuditLog(warehouse).record(result.audit_entry(run_id, started_at))
    return result


def _decide(warehouse: Warehouse, result: Publication, mappings: dict[str, Mapping], run_id: str) -> None:
    """Which rollouts wait for approval, which breaches a mapping approval waives, and whether a
    person's one-shot approval lets the rest through. Approvals are used only when they decide."""
    assert result.impact is not None
    approvals = Approvals(warehouse)
    breached = {b.crm for b in result.impact.breaches}
    for crm, version in sorted(result.rollouts.items()):
        needs = crm in breached or mappings[crm].rollout == "shadow"
        if not needs:
            continue  # within the limits: goes live by itself
        # a mapping version's approval stands for every entity and build of that version
        granted = approvals.latest(mapping_scope(crm, version))
        if granted is None:
            result.shadow_pending.append(crm)
        else:
            result.mapping_approvals.append(
                granted if granted.used_by_run else approvals.use(granted, run_id)
            )
    if result.shadow_pending:
        return
    waived = {a.scope.split(":")[1] for a in result.mapping_approvals}
    result.waived = waived
    if result.impact_blocked:
        granted = approvals.open(approval_scope(result.entity))
        result.approval = approvals.use(granted, run_id) if granted else None


def failure_sample(failures: pl.DataFrame, limit: int = SAMPLE_ROWS) -> str:
    """A markdown table of failure cases with personal data masked (for the check's metadata)."""
    lines = ["| source | id | rule | column | value |", "|---|---|---|---|---|"]
    for row in failures.head(limit).iter_rows(named=True):
        lines.append(
            f"| {row['source_system']} | {row['source_id']} | {row['rule']} | {row['column']} | "
            f"{mask_value(row['column'], row['value'])} |"
        )
    return "\n".join(lines)


def _previous(
    warehouse: Warehouse, entity: str, table: str, mappings: dict[str, Mapping]
) -> pl.DataFrame | None:
    """The published table in clear: it holds ciphertext (a fresh nonce per write), so comparing
    stored values would make every sensitive value look changed on every run."""
    if not warehouse.table_exists("canonical", table):
        return None
    stored = warehouse.read_frame(sql("SELECT * FROM {table}", table=ident("canonical", table)))
    return decrypt_frame(stored, sensitive_columns(entity, mappings))


def _pii(entity: str, mappings: dict[str, Mapping]) -> frozenset[str]:
    """Columns shown only as hashes in audit entries, metadata and alerts."""
    return pii_columns(entity, {f for m in mappings.values() for f in m.sensitive_fields(entity)})


def _changes(previous: pl.DataFrame | None, outcome: ValidationOutcome, pii: frozenset[str]) -> ChangeSummary:
    """What replacing ``canonical.<table>`` with the good rows changes (PII and sensitive fields hashed)."""
    return summarize_changes(
        previous,
        outcome.good,
        pii=pii,
        rejected=outcome.rejected.select(KEY) if outcome.rejected.height else None,
    )


def release_hold(warehouse: Warehouse, hold_id: str, reason: str) -> Hold:
    """A person releases a hold: the entity's next build publishes (its change impact approved
    once, as the mass change is now known), the hold's alerts resolve, and the audit log says who
    and why. Raises ``UnknownHold``."""
    started_at = datetime.now(UTC)
    hold = Holds(warehouse).release(hold_id, reason)
    approval = Approvals(warehouse).grant(
        approval_scope(hold.entity), f"hold {hold.id} released: {hold.release_reason}", hold.released_by
    )
    book = AlertBook(warehouse, sinks=None)
    for key in hold.details.get("alerts", []):
        book.resolve(key)
    AuditLog(warehouse).record(
        AuditEntry(
            run_id=None,
            step="hold_release",
            crm=None,
            entity=hold.entity,
            started_at=started_at,
            ended_at=datetime.now(UTC),
            details={
                "hold": hold.id,
                "hold_reason": hold.reason,
                "released_by": hold.released_by,
                "reason": hold.release_reason,
                "approval": approval.id,
            },
        )
    )
    return hold
