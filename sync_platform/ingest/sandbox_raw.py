"""Raw tables straight from the sandbox generator, shaped as dlt writes them, and the true duplicates.

Tests and benchmarks need realistic raw frames without a sync run: this builds them from a
:class:`~sync_platform.sandbox.state.SandboxState` with the same columns, names and types the
sources write (deleted records included: Salesforce keeps the row, HubSpot flags it archived,
Dynamics leaves a tombstone). Because the generator knows who is who (Salesforce contact ``i`` is
person ``i``, HubSpot contact ``i`` is person ``i + N/4``, Dynamics contact ``i`` is person
``i + N/2``; company ``j`` is company ``j`` everywhere), :func:`true_cross_crm_pairs` gives the
ground truth identity resolution is measured against.
"""

from __future__ import annotations

from itertools import combinations, islice

import polars as pl

from sync_platform.ingest.raw_schema import RAW_TABLES, raw_column
from sync_platform.ingest.sources.arrow import BOOL, DATETIME, INT, STRING
from sync_platform.sandbox import schema as sandbox_schema
from sync_platform.sandbox.generator import PERSON_OFFSET
from sync_platform.sandbox.state import SandboxState
from sync_platform.sandbox.store import DELETED, DELETED_AT

# the generator's datetimes are epoch milliseconds: read as integers, then converted
_POLARS = {STRING: pl.String, BOOL: pl.Boolean, INT: pl.Int64, DATETIME: pl.Int64}
ROLE_TABLES = {  # canonical entity -> raw table, per CRM
    "salesforce": {"contact": "contacts", "account": "accounts", "interaction": "cases"},
    "hubspot": {"contact": "contacts", "account": "companies", "interaction": "tickets"},
    "dynamics": {"contact": "contacts", "account": "accounts", "interaction": "incidents"},
}


def raw_frame(state: SandboxState, crm: str, table: str, limit: int | None = None) -> pl.DataFrame:
    """``raw_<crm>.<table>`` as a full sync of the sandbox would leave it (first ``limit`` records)."""
    spec = RAW_TABLES[crm][table]
    store = state.store(crm, sandbox_schema.ROLES[crm][_role(crm, table)])
    records = [rec for _, rec in islice(store.iter_by_index(include_deleted=True), limit)]
    fields = spec.fields
    columns = {name: [rec.get(name) for rec in records] for name in fields}
    frame = pl.DataFrame(columns, schema={name: _POLARS[kind] for name, kind in fields.items()})
    deleted_ms = pl.Series(
        [rec.get(DELETED_AT) if rec.get(DELETED) else None for rec in records], dtype=pl.Int64
    )
    frame = frame.with_columns(
        *(_timestamp(pl.col(name)) for name, kind in fields.items() if kind == DATETIME),
        _timestamp(pl.lit(deleted_ms)).alias("deleted_at"),
    ).rename({name: raw_column(name) for name in fields})
    if crm == "hubspot":
        frame = frame.with_columns(
            id=pl.col("hs_object_id"), archived=pl.col("deleted_at").is_not_null()
        ).select("id", pl.exclude("id", "archived", "deleted_at"), "archived", "deleted_at")
    if crm == "dynamics":
        frame = _tombstones(frame, store.spec.id_field)
    return frame


def raw_frames(state: SandboxState, entity: str) -> dict[str, pl.DataFrame]:
    """The raw table behind ``entity`` for every CRM."""
    return {crm: raw_frame(state, crm, tables[entity]) for crm, tables in ROLE_TABLES.items()}


def true_cross_crm_pairs(state: SandboxState, entity: str = "contact") -> pl.DataFrame:
    """Every pair of base records in two CRMs that the generator made from the same person (or company).

    Columns ``source_system_a, source_id_a, source_system_b, source_id_b`` with ``a`` before ``b`` in
    ``salesforce, hubspot, dynamics`` order. Records created after generation are not included.
    """
    counts = {"contact": state.config.contacts, "account": max(1, state.config.contacts // 10)}
    if entity not in counts:
        raise ValueError(f"the generator links contacts and accounts, not {entity}")
    n = counts[entity]
    members = {}
    for crm in ROLE_TABLES:
        spec = sandbox_schema.OBJECTS[crm][sandbox_schema.ROLES[crm][entity]]
        offset = int(PERSON_OFFSET[crm] * state.config.contacts) if entity == "contact" else 0
        members[crm] = pl.DataFrame(
            {"who": range(offset, offset + n), "source_id": [spec.format_id(i) for i in range(n)]}
        )
    pairs = []
    for a, b in combinations(ROLE_TABLES, 2):
        joined = members[a].join(members[b], on="who", suffix="_b")
        pairs.append(
            joined.select(
                pl.lit(a).alias("source_system_a"),
                pl.col("source_id").alias("source_id_a"),
                pl.lit(b).alias("source_system_b"),
                "source_id_b",
            )
        )
    return pl.concat(pairs)


def _timestamp(epoch_ms: pl.Expr) -> pl.Expr:
    """Epoch milliseconds as the warehouse hands timestamps back (DuckDB reports UTC as Etc/UTC)."""
    return pl.from_epoch(epoch_ms, "ms").dt.replace_time_zone("Etc/UTC").dt.cast_time_unit("us")


def _role(crm: str, table: str) -> str:
    return next(role for role, t in ROLE_TABLES[crm].items() if t == table)


def _tombstones(frame: pl.DataFrame, id_field: str) -> pl.DataFrame:
    """Dataverse reports only the id of a deleted row: blank every other column, as the source does."""
    deleted = pl.col("deleted_at").is_not_null()
    keep = {raw_column(id_field), "deleted_at", "modifiedon"}
    return frame.with_columns(
        *(pl.when(~deleted).then(pl.col(c)).alias(c) for c in frame.columns if c not in keep),
        pl.when(deleted).then(pl.col("deleted_at")).otherwise(pl.col("modifiedon")).alias("modifiedon"),
    )
