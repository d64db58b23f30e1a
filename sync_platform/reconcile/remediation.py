"""Remediation: re-fetch exactly the records reconciliation found different, by id.

Missing, stale and diverged ids are read again by id (SOQL ``Id IN``, HubSpot batch read,
Dataverse ``In`` filter, chunked) and merged into the raw tables through the ingestion
pipeline's schema, so the repair is idempotent. An id the CRM no longer returns at all was
deleted there without the delete reaching us: its raw row is soft-deleted (or removed, with
``hard_delete``). The incremental cursor is not touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sync_platform.core.config import CrmSyncConfig
from sync_platform.core.sql import ident, placeholders, quoted, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.fetch_by_id import fetch_ids_into_warehouse
from sync_platform.ingest.sources.common import DELETED_AT
from sync_platform.reconcile.cycle import TargetResult, pending_differences, targets

CHUNK = 500


@dataclass
class Remediation:
    requested: dict[str, int] = field(default_factory=dict)
    fetched: dict[str, int] = field(default_factory=dict)
    marked_deleted: dict[str, int] = field(default_factory=dict)
    ids: dict[str, set[str]] = field(default_factory=dict)

    @property
    def touched(self) -> bool:
        return any(self.requested.values())

    def still_different(self, results: Iterable[TargetResult]) -> dict[str, int]:
        """How many of the repaired ids the re-reconciliation still finds different, per table."""
        out = {}
        for result in results:
            repaired = self.ids.get(result.target.table, set())
            if repaired:
                ids = result.diff.differences["id"]
                out[result.target.table] = int(ids.is_in(list(repaired)).sum())
        return out


def remediate(crm: str, warehouse: Warehouse, cfg: CrmSyncConfig) -> Remediation:
    """Repair every pending difference of ``crm`` recorded by the last reconciliation."""
    pending = pending_differences(warehouse, crm)
    outcome = Remediation()
    if pending.is_empty():
        return outcome
    by_table = {
        table: group["id"].to_list() for (table,), group in pending.group_by("object", maintain_order=True)
    }
    outcome.requested = {t: len(ids) for t, ids in by_table.items()}
    outcome.ids = {t: set(ids) for t, ids in by_table.items()}
    fetched = fetch_ids_into_warehouse(crm, by_table, warehouse, cfg)
    outcome.fetched = dict(fetched.fetched)
    keys = {t.table: t.key for t in targets(crm)}
    hard = cfg.hard_delete
    for table, ids in fetched.not_found.items():
        outcome.marked_deleted[table] = mark_deleted(warehouse, crm, table, keys[table], ids, hard)
    return outcome


def mark_deleted(warehouse: Warehouse, crm: str, table: str, key: str, ids: Iterable[str], hard: bool) -> int:
    """Soft-delete (or delete) raw rows whose records the CRM no longer has."""
    ids = list(ids)
    done = 0
    stamp = datetime.now(UTC)
    raw, deleted_at = ident(f"raw_{crm}", table), ident(DELETED_AT)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        where = sql(
            "{key} IN ({marks}) AND {deleted_at} IS NULL",
            key=quoted(key),
            marks=placeholders(len(chunk)),
            deleted_at=deleted_at,
        )
        count = warehouse.query(sql("SELECT count(*) FROM {raw} WHERE {where}", raw=raw, where=where), chunk)[
            0
        ][0]
        if hard:
            warehouse.query(sql("DELETE FROM {raw} WHERE {where}", raw=raw, where=where), chunk)
        else:
            warehouse.query(
                sql(
                    "UPDATE {raw} SET {deleted_at} = ? WHERE {where}",
                    raw=raw,
                    deleted_at=deleted_at,
                    where=where,
                ),
                [stamp, *chunk],
            )
        done += int(count)
    return done
