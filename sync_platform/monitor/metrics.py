"""Sync metrics per CRM object: throughput, lag, errors by kind, dead letters, requests, API budget.

Read from the newest raw materialization of each object (the ingest assets write these numbers
as metadata every run) plus the current dead-letter depth, and appended to ``ops.sync_metrics``
so the history is a time series queryable in SQL, not only in the Dagster UI.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sync_platform.core.sql import ident, idents, placeholders, sql
from sync_platform.core.warehouse import Warehouse

TABLE = "ops.sync_metrics"
_DDL = """
CREATE TABLE IF NOT EXISTS ops.sync_metrics (
    measured_at TIMESTAMP WITH TIME ZONE NOT NULL,
    crm VARCHAR NOT NULL,
    object VARCHAR NOT NULL,
    run_id VARCHAR,
    synced_at TIMESTAMP WITH TIME ZONE,
    since_sync_s DOUBLE PRECISION,
    rows_extracted BIGINT,
    rows_total BIGINT,
    records_per_s DOUBLE PRECISION,
    lag_s DOUBLE PRECISION,
    newest_change_age_s DOUBLE PRECISION,
    requests BIGINT,
    retries BIGINT,
    http_429 BIGINT,
    errors_total BIGINT,
    errors_by_kind VARCHAR,
    dead_letters_pending BIGINT,
    api_budget_used BIGINT,
    api_budget_limit BIGINT,
    api_budget_remaining BIGINT
)"""


@dataclass
class SyncMetric:
    crm: str
    object: str
    run_id: str | None = None
    synced_at: datetime | None = None
    since_sync_s: float | None = None
    rows_extracted: int | None = None
    rows_total: int | None = None
    records_per_s: float | None = None
    lag_s: float | None = None  # now minus the moment the last sync is complete up to
    newest_change_age_s: float | None = None  # the newest change it saw: old on a quiet CRM, not a lag
    requests: int | None = None
    retries: int | None = None
    http_429: int | None = None
    errors_total: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    dead_letters_pending: int = 0
    api_budget_used: int | None = None
    api_budget_limit: int | None = None

    @property
    def api_budget_remaining(self) -> int | None:
        if self.api_budget_used is None or self.api_budget_limit is None:
            return None
        return self.api_budget_limit - self.api_budget_used


def _number(meta: Mapping[str, Any], name: str) -> Any:
    value = meta.get(name)
    return None if value is None or value == -1.0 and name.endswith("_s") else value


def _lag_now(meta: Mapping[str, Any], now: datetime) -> float | None:
    """How far behind the CRM the warehouse is now: the sync is complete up to ``complete_up_to``."""
    complete = meta.get("complete_up_to")
    if not complete:
        return None  # a materialization from before the figure existed
    return round((now - datetime.fromisoformat(complete)).total_seconds(), 1)


def metric_from_metadata(
    crm: str,
    obj: str,
    meta: Mapping[str, Any],
    synced_at: datetime | None,
    run_id: str | None,
    now: datetime,
    dead_letters: int = 0,
) -> SyncMetric:
    """One object's metrics from its materialization metadata (keys written by ``defs/ingest/assets.py``)."""
    errors = meta.get("source_errors_by_kind") or {}
    return SyncMetric(
        crm=crm,
        object=obj,
        run_id=run_id,
        synced_at=synced_at,
        since_sync_s=round((now - synced_at).total_seconds(), 1) if synced_at else None,
        rows_extracted=_number(meta, "rows_extracted"),
        rows_total=_number(meta, "rows_total"),
        records_per_s=_number(meta, "crm_records_per_s"),
        lag_s=_lag_now(meta, now),
        newest_change_age_s=_number(meta, "newest_change_age_s"),
        requests=_number(meta, "source_requests"),
        retries=_number(meta, "source_retries"),
        http_429=_number(meta, "source_http_429"),
        errors_total=int(sum(errors.values())),
        errors_by_kind={str(k): int(v) for k, v in errors.items()},
        dead_letters_pending=dead_letters,
        api_budget_used=_number(meta, "source_api_budget_used"),
        api_budget_limit=_number(meta, "source_api_budget_limit"),
    )


def dead_letter_depths(warehouse: Warehouse) -> dict[tuple[str, str], int]:
    from sync_platform.ops.dead_letters import DeadLetterQueue

    return dict(Counter((d.crm, d.object) for d in DeadLetterQueue(warehouse).pending()))


def record_sync_metrics(warehouse: Warehouse, metrics: Sequence[SyncMetric], measured_at: datetime) -> int:
    """Append one row per object to ``ops.sync_metrics``."""
    if not metrics:
        return 0
    columns = [
        "measured_at",
        *[k for k in asdict(metrics[0]) if k != "errors_by_kind"],
        "errors_by_kind",
        "api_budget_remaining",
    ]
    rows = []
    for m in metrics:
        values = asdict(m)
        values.update(
            measured_at=measured_at,
            errors_by_kind=json.dumps(m.errors_by_kind, sort_keys=True),
            api_budget_remaining=m.api_budget_remaining,
        )
        rows.append(tuple(values[c] for c in columns))
    insert = sql(
        "INSERT INTO {table} ({columns}) VALUES ({values})",
        table=ident(*TABLE.split(".")),
        columns=idents(columns),
        values=placeholders(len(columns), warehouse.placeholder),
    )
    with warehouse.connect() as conn:
        cur = conn.cursor()
        cur.execute("CREATE SCHEMA IF NOT EXISTS ops")
        cur.execute(_DDL)
        # tables made before the newest change's age had its own column
        cur.execute(
            "ALTER TABLE ops.sync_metrics ADD COLUMN IF NOT EXISTS newest_change_age_s DOUBLE PRECISION"
        )
        cur.executemany(insert, rows)
    return len(rows)


def per_crm_totals(metrics: Iterable[SyncMetric]) -> dict[str, dict[str, float]]:
    """Numbers per CRM for Dagster metadata (plotted over time in the UI)."""
    out: dict[str, dict[str, float]] = {}
    for m in metrics:
        t = out.setdefault(
            m.crm,
            {
                "records_per_s": 0.0,
                "lag_s": 0.0,
                "since_sync_s": 0.0,
                "requests": 0,
                "errors": 0,
                "dead_letters": 0,
            },
        )
        t["records_per_s"] = max(t["records_per_s"], float(m.records_per_s or 0))  # one run: the CRM's rate
        t["lag_s"] = max(t["lag_s"], float(m.lag_s or 0))
        t["since_sync_s"] = max(t["since_sync_s"], float(m.since_sync_s or 0))
        t["requests"] = max(t["requests"], int(m.requests or 0))  # the run's total, repeated per object
        t["errors"] = max(t["errors"], m.errors_total)
        t["dead_letters"] += m.dead_letters_pending
        if m.api_budget_remaining is not None:
            t["api_budget_remaining"] = m.api_budget_remaining
    return out
