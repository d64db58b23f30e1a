"""Freshness: how old each raw and canonical asset may get before someone is told.

A raw asset ``["raw", crm, object]`` is expected to be updated within ``freshness_slo_factor``
× its CRM's ``schedule_minutes`` (default 2 × the interval: one missed run is noise, two are an
incident); a canonical asset within the loosest SLO of the CRMs it reads (every enabled CRM).
``alerts.freshness_slo_minutes`` overrides both. An asset never materialized has no verdict:
a fresh install with stopped schedules pages nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sync_platform.core.config import CRMS, SyncConfig
from sync_platform.ops.alerts import Finding

SCOPE = "freshness:"
ERROR_FACTOR = 2  # stale beyond 2 × the SLO escalates from warning to error


@dataclass(frozen=True)
class FreshnessExpectation:
    path: tuple[str, ...]
    slo: timedelta
    crm: str | None = None

    @property
    def asset(self) -> str:
        return "/".join(self.path)

    @property
    def key(self) -> str:
        return f"{SCOPE}{self.asset}"


def crm_slo(config: SyncConfig, crm: str) -> timedelta:
    override = config.alerts.freshness_slo_minutes
    minutes = (
        override
        if override is not None
        else config.alerts.freshness_slo_factor * config.crm(crm).schedule_minutes
    )
    return timedelta(minutes=minutes)


def freshness_expectations(
    config: SyncConfig, raw_paths: Iterable[Sequence[str]], canonical_paths: Iterable[Sequence[str]] = ()
) -> list[FreshnessExpectation]:
    out = [FreshnessExpectation(tuple(p), crm_slo(config, p[1]), crm=p[1]) for p in raw_paths]
    enabled = [crm for crm in CRMS if config.crm(crm).enabled]
    if config.alerts.freshness_slo_minutes is not None:
        loosest = timedelta(minutes=config.alerts.freshness_slo_minutes)
    else:
        loosest = max((crm_slo(config, crm) for crm in enabled), default=timedelta(minutes=30))
    out += [FreshnessExpectation(tuple(p), loosest) for p in canonical_paths]
    return out


def _minutes(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def stale_findings(
    expectations: Iterable[FreshnessExpectation],
    last_updates: Mapping[tuple[str, ...], datetime | None],
    now: datetime,
) -> list[Finding]:
    """A finding per asset updated longer ago than its SLO (warning; error beyond twice the SLO)."""
    findings = []
    for e in expectations:
        last = last_updates.get(e.path)
        if last is None:
            continue
        age = now - last
        if age <= e.slo:
            continue
        findings.append(
            Finding(
                key=e.key,
                severity="error" if age > ERROR_FACTOR * e.slo else "warning",
                finding="stale_asset",
                message=f"{e.asset} last updated {_minutes(age)} ago (freshness SLO {_minutes(e.slo)})",
                crm=e.crm,
                asset=e.asset,
                details={
                    "last_update": last.astimezone(UTC).isoformat(),
                    "age_minutes": round(age.total_seconds() / 60, 1),
                    "slo_minutes": round(e.slo.total_seconds() / 60, 1),
                },
            )
        )
    return findings
