"""``sync-platform status``: per CRM the last run, lag, drift and dead letters, and the open alerts.

Reads the Dagster instance (runs, newest raw materializations) and the warehouse (dead letters,
``reconcile.drift_history`` when reconciliation has run, ``ops.alerts``); writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync_platform.core.config import CRMS, load_sync_config
from sync_platform.core.warehouse import Warehouse
from sync_platform.monitor.metrics import SyncMetric, dead_letter_depths
from sync_platform.monitor.run_history import collect_sync_metrics, last_run
from sync_platform.ops.alerts import Alert, AlertBook


@dataclass
class CrmStatus:
    crm: str
    last_run: str = "never"
    last_run_at: datetime | None = None
    last_sync_at: datetime | None = None
    lag_s: float | None = None
    newest_change_age_s: float | None = None
    dead_letters: int = 0
    objects: list[SyncMetric] = field(default_factory=list)


@dataclass
class StatusReport:
    now: datetime
    crms: list[CrmStatus]
    drift: list[dict[str, Any]]
    alerts: list[Alert]


def latest_drift(warehouse: Warehouse) -> list[dict[str, Any]]:
    """The newest ``reconcile.drift_history`` row per CRM and entity (empty before any reconciliation)."""
    if not warehouse.table_exists("reconcile", "drift_history"):
        return []
    rows = warehouse.query(
        "SELECT crm, entity, drift_share, threshold, status, checked_at FROM reconcile.drift_history d "
        "WHERE checked_at = (SELECT max(checked_at) FROM reconcile.drift_history x "
        "WHERE x.crm = d.crm AND x.entity = d.entity) ORDER BY crm, entity"
    )
    return [
        dict(zip(("crm", "entity", "drift_share", "threshold", "status", "checked_at"), r, strict=True))
        for r in rows
    ]


def gather_status(instance, warehouse: Warehouse, now: datetime | None = None) -> StatusReport:
    now = now or datetime.now(UTC)
    config = load_sync_config()
    crms = [crm for crm in CRMS if config.crm(crm).enabled]
    raw_keys = [tuple(k.path) for k in instance.get_asset_keys(prefix=["raw"]) if len(k.path) == 3]
    depths = dead_letter_depths(warehouse)
    metrics = collect_sync_metrics(instance, sorted(raw_keys), now, depths)
    out = []
    for crm in crms:
        status = CrmStatus(crm, objects=[m for m in metrics if m.crm == crm])
        status.last_run, status.last_run_at = last_run(instance, crm)
        synced = [m for m in status.objects if m.synced_at]
        if synced:
            status.last_sync_at = max(m.synced_at for m in synced)  # type: ignore[type-var]
            lags = [m.lag_s for m in synced if m.lag_s is not None]
            status.lag_s = max(lags) if lags else None
            ages = [m.newest_change_age_s for m in synced if m.newest_change_age_s is not None]
            status.newest_change_age_s = min(ages) if ages else None
        status.dead_letters = sum(n for (name, _), n in depths.items() if name == crm)
        out.append(status)
    return StatusReport(now, out, latest_drift(warehouse), AlertBook(warehouse, sinks=[]).open_alerts())


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "-"
    seconds = (now - then).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago" if seconds < 172_800 else f"{seconds / 86400:.1f}d ago"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 7200:
        return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h" if seconds < 172_800 else f"{seconds / 86400:.1f}d"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render(report: StatusReport) -> str:
    drift_by_crm: dict[str, list[str]] = {}
    for d in report.drift:
        drift_by_crm.setdefault(d["crm"], []).append(
            f"{d['entity']} {float(d['drift_share']):.2%} ({d['status']})"
        )
    rows = [
        [
            s.crm,
            s.last_run,
            _ago(report.now, s.last_run_at),
            _ago(report.now, s.last_sync_at),
            _duration(s.lag_s),
            _duration(s.newest_change_age_s),
            str(s.dead_letters),
            "; ".join(drift_by_crm.get(s.crm, [])) or "-",
        ]
        for s in report.crms
    ]
    lines = [f"sync_platform status at {report.now:%Y-%m-%d %H:%M:%S} UTC", ""]
    lines += _table(
        ["crm", "last run", "when", "last sync", "lag", "newest change", "dead letters", "drift"], rows
    )
    lines.append("")
    if report.alerts:
        lines.append(f"open alerts ({len(report.alerts)}):")
        lines += _table(
            ["severity", "key", "since", "seen", "message"],
            [
                [a.severity, a.key, _ago(report.now, a.first_seen), f"{a.occurrences}x", a.message]
                for a in report.alerts
            ],
        )
    else:
        lines.append("no open alerts")
    return "\n".join(lines)
