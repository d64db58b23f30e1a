"""Targeted repair: re-fetch given records by id into the raw tables, cursors untouched.

Reconciliation remediation and dead-letter replay both know *which* records are wrong or
missing; re-reading only those is cheaper and safer than a full refresh. The by-id source
loads through the ingestion pipeline (same name, dataset and schema, merge on the record id),
and it has no incremental, so the next incremental run resumes exactly where it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sync_platform.core.config import CrmSyncConfig
from sync_platform.core.warehouse import Warehouse, run_pipeline
from sync_platform.ingest.connections import build_by_id_source
from sync_platform.ingest.history import RawHistory
from sync_platform.ingest.pipeline import build_pipeline, crm_error
from sync_platform.ingest.sources.common import SyncReport
from sync_platform.ops.dead_letters import DeadLetterQueue


@dataclass
class RepairResult:
    """Per table: rows fetched and loaded, and ids the CRM no longer returns at all.

    A Salesforce record in the recycle bin or an archived HubSpot record is *fetched* (it
    lands with ``deleted_at`` set); ``not_found`` holds ids that are purged, never existed or
    (Dataverse returns no deleted rows) deleted in Dynamics: the caller decides to mark them
    deleted.
    """

    crm: str
    fetched: dict[str, int] = field(default_factory=dict)
    not_found: dict[str, list[str]] = field(default_factory=dict)
    rejected: dict[str, list[str]] = field(default_factory=dict)  # fetched but not loadable: now dead letters
    load_ids: list[str] = field(default_factory=list)
    requests: int = 0


def fetch_ids_into_warehouse(
    crm: str,
    ids_by_table: Mapping[str, Sequence[str]],
    warehouse: Warehouse,
    cfg: CrmSyncConfig,
    run_id: str | None = None,
) -> RepairResult:
    """Fetch ``{table: [id, ...]}`` of one CRM and merge them into ``raw_<crm>.<table>``.

    Raises the ``CrmRequestError`` that stopped it (nothing is loaded then). A fetched record
    that cannot be loaded becomes a record-level dead letter (``rejected``), written as its table's
    read ends, before the load: a failed write fails the fetch instead of losing the record. Only
    one process holds a DuckDB warehouse at a time: the load waits for the warehouse's turn.
    """
    wanted = {table: list(ids) for table, ids in ids_by_table.items() if ids}
    result = RepairResult(crm)
    if not wanted:
        return result
    queue = DeadLetterQueue(warehouse)
    report = SyncReport(
        crm, dead_letters=lambda table, rejects: queue.add_records(crm, table, rejects, run_id)
    )
    source = build_by_id_source(crm, cfg, wanted, report=report)
    pipeline = build_pipeline(crm, warehouse)
    try:
        with warehouse.turn():
            info = run_pipeline(pipeline, source)
    except Exception as exc:
        cause = crm_error(exc)
        if cause is None:
            raise
        raise cause from None
    result.load_ids = list(info.loads_ids)
    RawHistory(warehouse).record(crm, list(wanted))  # a repair is a new version too
    result.requests = report.stats.requests
    for table in wanted:
        resource = report.resource(table)
        result.fetched[table] = resource.rows
        result.not_found[table] = sorted(resource.not_found)
        result.rejected[table] = sorted({r.record_id or "" for r in resource.rejects} - {""})
    return result
