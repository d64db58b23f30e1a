"""The sync configuration file (``data/sync.yaml``): schedules and HTTP policy per CRM.

Validated at load time with pydantic; a bad file fails before anything runs, with a message
naming the file, the key and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sync_platform.core.settings import PROJECT_ROOT, load_settings

CRMS = ("salesforce", "hubspot", "dynamics")
CrmName = Literal["salesforce", "hubspot", "dynamics"]
DEFAULT_PATH = PROJECT_ROOT / "data" / "sync.yaml"


class ConfigError(ValueError):
    """A configuration file is malformed; the message names the file and the field."""


class CrmSyncConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    schedule_minutes: int = Field(15, description="Incremental sync interval, 1 minute .. 24 hours.")
    look_back_seconds: float = Field(300.0, ge=0, le=7 * 86_400)
    future_tolerance_seconds: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description=(
            "How far past the CRM's clock (its responses' Date) a record's cursor stamp may be; the "
            "smaller of this and look_back_seconds counts. A later stamp (an admin script's, a clock gone "
            "wrong) still loads, raises a future_cursor alert, and the saved cursor stops at the CRM's "
            "now plus this, so it cannot skip the changes made until the clock catches up."
        ),
    )
    hard_delete: bool = False
    max_attempts: int = Field(6, ge=1, le=20)
    backoff_initial_seconds: float = Field(0.5, gt=0, le=60)
    backoff_max_seconds: float = Field(30.0, gt=0, le=600)
    page_size: int | None = Field(
        None,
        ge=1,
        le=5000,
        description="Salesforce batchSize (200..2000), "
        "Dynamics odata.maxpagesize (..5000); HubSpot pages are fixed.",
    )
    search_requests_per_second: int = Field(5, ge=1, le=100, description="HubSpot search ceiling (~5/s).")
    requests_per_window: int | None = Field(None, ge=1)
    window_seconds: float = Field(10.0, gt=0)
    budget_reserve: int = Field(0, ge=0)
    change_tracking: Literal["auto", "on", "off"] = Field(
        "auto",
        description=(
            "Dynamics only. auto: use change tracking, and fall back to modifiedon (remembered per table) "
            "when a table is not tracked; on: fail if it is not; "
            "off: always read modifiedon (deletes go unseen)."
        ),
    )
    owners: list[str] = Field(default_factory=lambda: ["team:revops"])

    @field_validator("schedule_minutes")
    @classmethod
    def _schedulable(cls, minutes: int) -> int:
        if not 1 <= minutes <= 1440:
            raise ValueError(f"must be between 1 (minute) and 1440 (24 hours), got {minutes}")
        if not (60 % minutes == 0 or (minutes % 60 == 0 and 1440 % minutes == 0)):
            raise ValueError(
                f"{minutes} does not divide an hour or a day evenly "
                "(use e.g. 1, 5, 15, 30, 60, 120, 360, 720 or 1440)"
            )
        return minutes

    @property
    def cron(self) -> str:
        m = self.schedule_minutes
        if m < 60:
            return "* * * * *" if m == 1 else f"*/{m} * * * *"
        hours = m // 60
        return "0 0 * * *" if hours == 24 else ("0 * * * *" if hours == 1 else f"0 */{hours} * * *")


ImpactMetric = Literal[
    "max_config_changed_share", "max_null_rate_increase", "max_distribution_shift", "max_row_loss_share"
]
IMPACT_METRICS: tuple[str, ...] = ImpactMetric.__args__  # type: ignore[attr-defined]


class ScopedRule(BaseModel):
    """A setting for one CRM, entity or field; any of the three left out means "every"."""

    model_config = ConfigDict(extra="forbid")

    crm: CrmName | None = None
    entity: Literal["contact", "account", "interaction"] | None = None
    field: str | None = Field(None, description="A canonical field name.")

    def matches(self, crm: str, entity: str, field: str | None) -> bool:
        return (
            (self.crm is None or self.crm == crm)
            and (self.entity is None or self.entity == entity)
            and (self.field is None or self.field == field)
        )

    @property
    def specificity(self) -> int:
        return sum(x is not None for x in (self.crm, self.entity, self.field))


class ImpactOverride(ScopedRule):
    """Limits for one CRM, entity or field (any of the three may be left out to mean "every")."""

    max_config_changed_share: float | None = Field(None, ge=0, le=1)
    max_null_rate_increase: float | None = Field(None, ge=0, le=1)
    max_distribution_shift: float | None = Field(None, ge=0)
    max_row_loss_share: float | None = Field(None, ge=0, le=1)


class ChangeImpactConfig(BaseModel):
    """The change-impact gate: how far one canonical build may move from the one published before it."""

    model_config = ConfigDict(extra="forbid")

    max_config_changed_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of a CRM's rows whose value of a field changed while their raw row did not "
        "(a change made by the configuration, not by the CRM).",
    )
    max_null_rate_increase: float = Field(
        0.10,
        ge=0,
        le=1,
        description="Rise of a field's null rate among a CRM's live rows (0.10 = 10 points).",
    )
    max_distribution_shift: float = Field(
        0.25,
        ge=0,
        description="Population stability index of a categorical field's values (0.25: a major shift).",
    )
    max_row_loss_share: float = Field(
        0.20, ge=0, le=1, description="Share of a CRM's live rows of an entity gone since the last build."
    )
    min_rows: int = Field(
        50, ge=1, description="Shares of a CRM with fewer rows in the last build are reported, not judged."
    )
    overrides: list[ImpactOverride] = Field(
        default_factory=list,
        description="Per CRM / entity / field limits, e.g. {crm: hubspot, entity: contact, field: title, "
        "max_config_changed_share: 0.5}; the most specific match wins.",
    )

    def limit(self, metric: str, crm: str, entity: str, field: str | None = None) -> float:
        """The limit of ``metric`` for one CRM, entity and (optionally) field."""
        if metric not in IMPACT_METRICS:
            raise ValueError(f"unknown change-impact metric {metric!r}")
        matching = [
            o for o in self.overrides if o.matches(crm, entity, field) and getattr(o, metric) is not None
        ]
        if matching:
            return float(getattr(max(matching, key=lambda o: o.specificity), metric))
        return float(getattr(self, metric))


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_rejected_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description=(
            "Blast-radius gate: above this share of rejected rows in a run, the canonical table is not "
            "replaced and downstream assets stop."
        ),
    )
    change_impact: ChangeImpactConfig = Field(default_factory=ChangeImpactConfig)


class ReconcileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule_cron: str = Field("0 3 * * *", description="When the reconciliation cycle runs (UTC cron).")
    drift_threshold: float = Field(
        0.005,
        ge=0,
        le=1,
        description=(
            "Drift share (differing / source records) above which the drift check fails with ERROR; "
            "any non-zero drift below it warns."
        ),
    )
    thresholds: dict[CrmName, dict[str, float]] = Field(
        default_factory=dict,
        description=("Per CRM and raw table overrides, e.g. {salesforce: {contacts: 0.01}}."),
    )
    auto_remediate: bool = Field(
        True,
        description=(
            "Re-fetch differing records right after each cycle; false: alert and wait for a person to "
            "launch the remediation job."
        ),
    )
    engine: Literal["polars", "sql"] = Field(
        "polars",
        description=(
            "Where the comparison runs: 'polars' in the step's process (fast up to tens of millions of "
            "records), 'sql' inside the warehouse by bucket checksums (memory stays flat)."
        ),
    )
    cross_crm_threshold: float = Field(
        0.05,
        ge=0,
        le=1,
        description=(
            "Share of linked golden records with conflicting values across CRMs above which the report "
            "marks them in error (the check itself only warns: it is the business's data, not a sync fault)."
        ),
    )
    identical_cursor_share: float = Field(
        0.2,
        gt=0,
        le=1,
        description=("An implausible share of live records sharing one cursor value (a mass overwrite)."),
    )
    probe_sample: int = Field(
        200,
        ge=0,
        le=10_000,
        description=(
            "Records re-read by id after each incremental sync to see activity the cursor missed (0: off)."
        ),
    )
    zero_change_runs: int = Field(
        2,
        ge=1,
        le=100,
        description=(
            "Consecutive successful syncs with no change, while the probe sees activity, before alerting."
        ),
    )

    @field_validator("schedule_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value

    @field_validator("thresholds")
    @classmethod
    def _shares(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for crm, tables in value.items():
            for table, share in tables.items():
                if not 0 <= share <= 1:
                    raise ValueError(
                        f"{crm}.{table}: a drift threshold is a share between 0 and 1, got {share}"
                    )
        return value

    def threshold(self, crm: str, table: str) -> float:
        return self.thresholds.get(crm, {}).get(table, self.drift_threshold)  # type: ignore[call-overload]


AlertSinkName = Literal["log", "webhook", "email"]


class AlertsConfig(BaseModel):
    """Where alerts go and when the monitor raises them (``sync_platform/alerts``, ``defs/monitor``)."""

    model_config = ConfigDict(extra="forbid")

    sinks: list[AlertSinkName] = Field(
        default_factory=lambda: ["log", "webhook", "email"],
        description=(
            "Notification sinks. 'webhook' is active only when "
            "SYNC_PLATFORM_ALERT_WEBHOOK_URL is set (a secret)."
        ),
    )
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(3, ge=1, le=10)
    email_to: list[str] = Field(default_factory=lambda: ["sync-oncall@localhost"])
    email_from: str = "sync-platform@localhost"
    freshness_slo_factor: float = Field(
        2.0, ge=1, le=100, description=("Freshness SLO of a raw asset = this × its CRM's schedule_minutes.")
    )
    freshness_slo_minutes: int | None = Field(
        None,
        ge=1,
        le=7 * 1440,
        description=("Override: one SLO in minutes for every raw and canonical asset."),
    )
    dead_letter_max_depth: int = Field(
        0,
        ge=0,
        description=("Pending dead letters per CRM above this raise a warning (0: any pending dead letter)."),
    )
    dead_letter_error_depth: int = Field(100, ge=0, description="Above this depth the alert is an error.")
    error_rate_max: float = Field(
        0.5,
        ge=0,
        le=1,
        description=("Alert when failed / total of a CRM's recent <crm>_sync runs exceeds this."),
    )
    error_rate_runs: int = Field(
        10, ge=1, le=1000, description="How many recent runs the error rate looks at."
    )
    error_rate_min_runs: int = Field(3, ge=1, le=1000, description="No error-rate verdict on fewer runs.")

    @field_validator("dead_letter_error_depth")
    @classmethod
    def _error_above_warning(cls, depth: int, info) -> int:
        warning = info.data.get("dead_letter_max_depth", 0)
        if depth < warning:
            raise ValueError(f"must be at least dead_letter_max_depth ({warning}), got {depth}")
        return depth


class AuditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retention_days: int = Field(
        400,
        ge=1,
        description=("Audit-log entries older than this are deleted by the daily ops/audit_retention asset."),
    )


class MassChangeConfig(BaseModel):
    """A CRM-side mass change: one sync changing one field in an implausible share of an object's records."""

    model_config = ConfigDict(extra="forbid")

    max_changed_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Share of an object's live records whose field changed in one sync above which the "
        "canonical entity it feeds is held and a mass_change alert raised.",
    )
    min_rows: int = Field(100, ge=1, description="Objects with fewer live records are not judged.")
    thresholds: dict[CrmName, dict[str, float]] = Field(
        default_factory=dict, description="Per CRM and raw table overrides, e.g. {hubspot: {contacts: 0.5}}."
    )

    def limit(self, crm: str, table: str) -> float:
        return self.thresholds.get(crm, {}).get(table, self.max_changed_share)  # type: ignore[call-overload]


class HistoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    canonical_builds: int = Field(
        5,
        ge=1,
        le=100,
        description="Published canonical builds kept whole per entity (`sync-platform canonical restore`).",
    )
    raw_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="Prior versions of raw records stay this many days after a newer one arrived "
        "(`sync-platform history`); a record's newest version is always kept.",
    )


ConflictStrategy = Literal["last_write_wins", "field_merge", "manual_review"]


class ConflictRule(ScopedRule):
    """The strategy for one CRM, entity or field (any left out means "every"); the most specific wins."""

    strategy: ConflictStrategy
    prefer: Literal["crm", "outbound"] | None = Field(
        None, description="field_merge: which side a field changed on both sides follows."
    )


class ConflictConfig(BaseModel):
    """A field changed in the CRM and in an outbound change since the value both last agreed on."""

    model_config = ConfigDict(extra="forbid")

    default: ConflictStrategy = "last_write_wins"
    prefer: Literal["crm", "outbound"] = Field(
        "crm", description="field_merge's default side for a field changed on both sides."
    )
    skew_seconds: float = Field(
        120, ge=0, le=3600, description="last_write_wins: the CRM's change must be this much newer to win."
    )
    rules: list[ConflictRule] = Field(default_factory=list)

    def strategy(self, crm: str, entity: str, field: str) -> tuple[str, str]:
        """(strategy, preferred side) for one CRM, entity and canonical field."""
        found = [r for r in self.rules if r.matches(crm, entity, field)]
        if not found:
            return self.default, self.prefer
        rule = max(found, key=lambda r: r.specificity)
        return rule.strategy, rule.prefer or self.prefer


class OutboundConfig(BaseModel):
    """Write-back: where creates go (an update goes to every CRM that holds the golden record), and
    how a conflict between a CRM's change and an outbound change is settled."""

    model_config = ConfigDict(extra="forbid")

    conflicts: ConflictConfig = Field(default_factory=ConflictConfig)

    create_in: dict[Literal["contact", "account", "interaction"], CrmName] = Field(
        default_factory=dict,
        description="Per canonical entity, the CRM that owns new records: a create goes there only.",
    )


class SyncConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crms: dict[CrmName, CrmSyncConfig] = Field(default_factory=dict)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    reconcile: ReconcileConfig = Field(default_factory=ReconcileConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    mass_change: MassChangeConfig = Field(default_factory=MassChangeConfig)
    outbound: OutboundConfig = Field(default_factory=OutboundConfig)

    def crm(self, name: str) -> CrmSyncConfig:
        return self.crms.get(name) or CrmSyncConfig()  # type: ignore[call-arg]


def load_sync_config(path: Path | None = None) -> SyncConfig:
    path = Path(path or load_settings().config_path)
    try:
        raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return SyncConfig.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
