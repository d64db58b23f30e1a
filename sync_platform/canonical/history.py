"""The last published canonical builds, kept whole so one can be put back in seconds.

Every publish appends the table it wrote (sensitive columns still encrypted, exactly as
published) to ``canonical_history.<table>`` under a new ``build_id``, and registers the build in
``ops.canonical_builds``; builds beyond ``history.canonical_builds`` (sync.yaml) are dropped,
oldest first. ``restore`` writes a kept build back over ``canonical.<table>`` and registers that
as a build of its own (``restored_from``), so a restore is itself in the history and can be undone.

Whole copies rather than deltas: a restore is then one read and one write, with no chain of
changes to replay, and the embedded DuckDB compresses repeated columns well. The raw layer's
per-record history (``sync-platform history``) answers the other question, "what did this
record look like before time T".
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from sync_platform.canonical.model import ENTITY_TABLES
from sync_platform.core.sql import ident, idents, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.audit import AuditEntry, AuditLog

HISTORY = "canonical_history"
BUILD_ID = "build_id"
_BUILDS = ident("ops", "canonical_builds")
_DDL = sql(
    "CREATE TABLE IF NOT EXISTS {table} (build_id VARCHAR PRIMARY KEY, entity VARCHAR NOT NULL, "
    "table_name VARCHAR NOT NULL, run_id VARCHAR, published_at TIMESTAMPTZ NOT NULL, "
    "row_count BIGINT NOT NULL, mapping_versions VARCHAR, restored_from VARCHAR)",
    table=_BUILDS,
)
_COLUMNS = idents(
    (
        "build_id",
        "entity",
        "table_name",
        "run_id",
        "published_at",
        "row_count",
        "mapping_versions",
        "restored_from",
    )
)


class UnknownBuild(LookupError):
    """No kept build has this id (never published, or dropped by retention)."""


@dataclass(frozen=True)
class Build:
    build_id: str
    entity: str
    table_name: str
    run_id: str | None
    published_at: datetime
    row_count: int
    mapping_versions: dict[str, int]
    restored_from: str | None = None


class BuildHistory:
    def __init__(self, warehouse: Warehouse, keep: int = 5) -> None:
        if keep < 1:
            raise ValueError("keep at least one build")
        self.warehouse = warehouse
        self.keep = keep

    def ensure(self) -> None:
        self.warehouse.query("CREATE SCHEMA IF NOT EXISTS ops")
        self.warehouse.query(_DDL)

    def record(
        self,
        entity: str,
        published: pl.DataFrame,
        run_id: str | None,
        versions: dict[str, int],
        restored_from: str | None = None,
    ) -> Build:
        """Keep ``published`` (the frame just written to ``canonical.<table>``) as a new build."""
        self.ensure()
        table = ENTITY_TABLES[entity][0]
        build = Build(
            f"{table}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
            entity,
            table,
            run_id,
            datetime.now(UTC),
            published.height,
            dict(versions),
            restored_from,
        )
        self.warehouse.write_frame(
            published.with_columns(pl.lit(build.build_id).alias(BUILD_ID)),
            HISTORY,
            table,
            disposition="append",
        )
        self.warehouse.query(
            sql(
                "INSERT INTO {table} ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                table=_BUILDS,
                columns=_COLUMNS,
            ),
            (
                build.build_id,
                entity,
                table,
                run_id,
                build.published_at,
                build.row_count,
                json.dumps(build.mapping_versions, sort_keys=True),
                restored_from,
            ),
        )
        self._drop_beyond_retention(entity, table)
        return build

    def builds(self, entity: str | None = None) -> list[Build]:
        """Kept builds, newest first."""
        if not self.warehouse.table_exists("ops", "canonical_builds"):
            return []
        where, params = (sql("WHERE entity = ?"), (entity,)) if entity else (sql(""), ())
        rows = self.warehouse.query(
            sql(
                "SELECT {columns} FROM {table} {where} ORDER BY published_at DESC",
                columns=_COLUMNS,
                table=_BUILDS,
                where=where,
            ),
            params,
        )
        return [_build(r) for r in rows]

    def get(self, build_id: str) -> Build:
        found = [b for b in self.builds() if b.build_id == build_id]
        if not found:
            kept = ", ".join(b.build_id for b in self.builds()[:10]) or "none"
            raise UnknownBuild(f"no kept canonical build {build_id!r} (kept, newest first: {kept})")
        return found[0]

    def frame(self, build_id: str) -> pl.DataFrame:
        """The table as build ``build_id`` published it (sensitive columns encrypted)."""
        build = self.get(build_id)
        rows = self.warehouse.read_frame(
            sql("SELECT * FROM {table} WHERE build_id = ?", table=ident(HISTORY, build.table_name)),
            [build_id],
        )
        return rows.drop(BUILD_ID)

    def restore(self, build_id: str, run_id: str | None, by: str | None = None) -> Build:
        """Put build ``build_id`` back as ``canonical.<table>``, audited; returns the build recording it."""
        started_at = datetime.now(UTC)
        build = self.get(build_id)
        frame = self.frame(build_id)
        self.warehouse.write_frame(frame, "canonical", build.table_name)
        restored = self.record(build.entity, frame, run_id, build.mapping_versions, restored_from=build_id)
        AuditLog(self.warehouse).record(
            AuditEntry(
                run_id=run_id,
                step="canonical_restore",
                crm=None,
                entity=build.entity,
                started_at=started_at,
                ended_at=datetime.now(UTC),
                records_read=frame.height,
                details={
                    "restored_build": build_id,
                    "published_at": build.published_at.isoformat(),
                    "new_build": restored.build_id,
                    "by": by,
                },
            )
        )
        return restored

    def _drop_beyond_retention(self, entity: str, table: str) -> None:
        stale = [b.build_id for b in self.builds(entity)[self.keep :]]
        for build_id in stale:
            self.warehouse.query(
                sql("DELETE FROM {table} WHERE build_id = ?", table=ident(HISTORY, table)), (build_id,)
            )
            self.warehouse.query(sql("DELETE FROM {table} WHERE build_id = ?", table=_BUILDS), (build_id,))


def _build(row: tuple) -> Build:
    build_id, entity, table, run_id, published_at, count, versions, restored_from = row
    return Build(
        build_id,
        entity,
        table,
        run_id,
        published_at,
        int(count),
        json.loads(versions) if versions else {},
        restored_from,
    )
