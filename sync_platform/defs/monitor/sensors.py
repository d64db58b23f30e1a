"""Alert sensors: freshness, dead-letter depth and error rate, the canonical quality gate.

Each tick reports everything its monitor currently sees to the alert book, which raises,
de-duplicates and resolves (``sync_platform/alerts``). On the embedded DuckDB warehouse a
reader in another process shuts a writer out, so a sensor stands aside while a run is in
progress (at most ``STAND_ASIDE_TICKS`` ticks in a row, so a hung run cannot silence the
monitor) and opens the warehouse only for the few statements it needs.
"""

from collections.abc import Callable
from datetime import datetime

import dagster as dg
from dagster._time import get_current_datetime  # Dagster's clock: the one event timestamps use

from sync_platform.core.config import CRMS
from sync_platform.core.warehouse import DUCKDB, Warehouse, WarehouseBusy
from sync_platform.defs.monitor.targets import canonical_entity_paths, expectations
from sync_platform.defs.resources import SyncConfigResource, WarehouseResource
from sync_platform.monitor import freshness, health, quality_gate, run_history
from sync_platform.ops.alerts import AlertBook, AlertOutcome
from sync_platform.ops.dead_letters import DeadLetterQueue

STAND_ASIDE_TICKS = 5
_WRITING = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _summary(outcome: AlertOutcome) -> str:
    parts = [
        f"{name} {', '.join(keys)}"
        for name, keys in (
            ("raised", outcome.raised),
            ("escalated", outcome.escalated),
            ("resolved", outcome.resolved),
        )
        if keys
    ]
    if outcome.repeated:
        parts.append(f"{len(outcome.repeated)} still open")
    if outcome.pending_notices:
        parts.append(f"{outcome.pending_notices} notice(s) awaiting delivery")
    return "; ".join(parts) or "all clear"


def run_monitor(
    context: dg.SensorEvaluationContext,
    resource: WarehouseResource,
    body: Callable[[Warehouse, datetime], str],
) -> dg.SkipReason:
    """Run ``body`` against the warehouse unless a run is writing to DuckDB right now."""
    warehouse = resource.get()
    if warehouse.kind == DUCKDB:
        skipped = int(context.cursor or 0)
        if skipped < STAND_ASIDE_TICKS and context.instance.get_runs(
            filters=dg.RunsFilter(statuses=_WRITING), limit=1
        ):
            context.update_cursor(str(skipped + 1))
            return dg.SkipReason("a run is writing to the DuckDB warehouse: standing aside this tick")
    context.update_cursor("0")
    try:
        # never wait for the warehouse: a sensor holding up a run is worse than a skipped tick
        with warehouse.turn(wait=False):
            return dg.SkipReason(body(warehouse, get_current_datetime()))
    except WarehouseBusy:
        return dg.SkipReason("another process has the DuckDB warehouse's turn: trying again next tick")
    except Exception as exc:
        if (
            type(exc).__name__ == "IOException" and "lock" in str(exc).lower()
        ):  # duckdb: another process has it
            return dg.SkipReason("the DuckDB warehouse is locked by another process: trying again next tick")
        raise


@dg.sensor(
    name="freshness_alerts", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def freshness_alerts(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.SkipReason:
    """Alert when the age of a raw or canonical asset exceeds its freshness SLO; resolve when fresh."""

    def body(store: Warehouse, now: datetime) -> str:
        wanted = expectations(sync_config.load())
        last = run_history.last_updates(context.instance, [e.path for e in wanted])
        findings = freshness.stale_findings(wanted, last, now=now)
        return _summary(AlertBook(store).report(freshness.SCOPE, findings, now=now))

    return run_monitor(context, warehouse, body)


@dg.sensor(
    name="dead_letter_alerts", minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING
)
def dead_letter_alerts(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, sync_config: SyncConfigResource
) -> dg.SkipReason:
    """Alert per CRM on pending dead letters and on recent syncs failing too often, with the error kinds."""

    def body(store: Warehouse, now: datetime) -> str:
        config = sync_config.load()
        book = AlertBook(store)
        depth = book.report(
            health.DEAD_LETTER_SCOPE,
            health.dead_letter_findings(DeadLetterQueue(store).pending(), config.alerts),
            now=now,
        )
        runs = {
            crm: run_history.recent_sync_runs(context.instance, crm, config.alerts.error_rate_runs)
            for crm in CRMS
            if config.crm(crm).enabled
        }
        failed = [r.run_id for outcomes in runs.values() for r in outcomes if r.failed]
        rate = book.report(
            health.ERROR_RATE_SCOPE,
            health.error_rate_findings(runs, health.dead_letters_of_runs(store, failed), config.alerts),
            now=now,
        )
        return f"dead letters: {_summary(depth)}. error rate: {_summary(rate)}"

    return run_monitor(context, warehouse, body)


@dg.sensor(
    name="quality_gate_alerts", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def quality_gate_alerts(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SkipReason:
    """Alert while the newest canonical build of an entity was blocked by its quality gate (blast radius)."""

    def body(store: Warehouse, now: datetime) -> str:
        latest = run_history.latest_metadata(context.instance, canonical_entity_paths())
        return _summary(
            AlertBook(store).report(quality_gate.SCOPE, quality_gate.blast_radius_findings(latest), now=now)
        )

    return run_monitor(context, warehouse, body)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[freshness_alerts, dead_letter_alerts, quality_gate_alerts])
