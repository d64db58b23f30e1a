"""What Dagster's own records say: materializations and runs, read from the instance.

The monitors' input is Dagster's run and event history (when an asset last landed, with what
metadata; which sync runs failed). This is the one module outside ``defs/`` that imports Dagster,
and only to read that history; the judgements (stale, error rate, blast radius) are plain
functions in the sibling modules, tested without an instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from sync_platform.monitor.health import RunOutcome
from sync_platform.monitor.metrics import SyncMetric, metric_from_metadata


def last_updates(instance, paths: Iterable[Sequence[str]]) -> dict[tuple[str, ...], datetime | None]:
    """Latest materialization time per asset, from the Dagster instance (one batched query)."""
    keys = [dg.AssetKey(list(p)) for p in paths]
    out: dict[tuple[str, ...], datetime | None] = {tuple(k.path): None for k in keys}
    for record in instance.get_asset_records(keys):
        entry = record.asset_entry
        event = entry.last_materialization
        if event is not None:
            out[tuple(entry.asset_key.path)] = datetime.fromtimestamp(event.timestamp, UTC)
    return out


def recent_sync_runs(instance, crm: str, limit: int) -> list[RunOutcome]:
    """The CRM's latest finished ``<crm>_sync`` runs, newest first."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=f"{crm}_sync", statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
        ),
        limit=limit,
    )
    return [RunOutcome(r.run_id, r.status == dg.DagsterRunStatus.FAILURE) for r in runs]


def collect_sync_metrics(
    instance,
    paths: Iterable[Sequence[str]],
    now: datetime,
    dead_letters: Mapping[tuple[str, str], int] | None = None,
) -> list[SyncMetric]:
    """Metrics of every raw asset ``["raw", crm, object]`` from its newest materialization in ``instance``."""
    dead_letters = dead_letters or {}
    out = []
    for path in paths:
        _, crm, obj = path
        event = instance.get_latest_materialization_event(dg.AssetKey(list(path)))
        depth = dead_letters.get((crm, obj), 0)
        if event is None or event.asset_materialization is None:
            out.append(SyncMetric(crm=crm, object=obj, dead_letters_pending=depth))
            continue
        meta = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
        out.append(
            metric_from_metadata(
                crm, obj, meta, datetime.fromtimestamp(event.timestamp, UTC), event.run_id, now, depth
            )
        )
    return out


def latest_metadata(instance, paths) -> dict[tuple[str, ...], dict[str, Any]]:
    """Newest materialization metadata per asset path, as plain values."""
    out = {}
    for path in paths:
        event = instance.get_latest_materialization_event(dg.AssetKey(list(path)))
        if event is not None and event.asset_materialization is not None:
            out[tuple(path)] = {
                k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()
            }
    return out


def last_run(instance, crm: str) -> tuple[str, datetime | None]:
    records = [
        *instance.get_run_records(filters=dg.RunsFilter(tags={"crm": crm}), limit=1),
        *instance.get_run_records(filters=dg.RunsFilter(job_name="sync_all"), limit=1),
    ]
    if not records:
        return "never", None
    newest = max(records, key=lambda r: r.create_timestamp)
    when = newest.end_time or newest.start_time or newest.create_timestamp.timestamp()
    return f"{newest.dagster_run.status.value} ({newest.dagster_run.job_name})", datetime.fromtimestamp(
        when, UTC
    )
