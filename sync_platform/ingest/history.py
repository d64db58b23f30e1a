"""Prior versions of every raw record: what a record looked like before time T is one query.

dlt's merge keeps only a record's newest version in ``raw_<crm>.<table>``. After each load, the
rows that load wrote are appended to ``raw_history.<crm>_<table>`` with ``recorded_at`` (when the
warehouse learnt that version) and ``version_hash`` (a fingerprint of the CRM fields); a row equal
to the record's newest kept version (a look-back re-read, a replay) is not kept twice.

Why a change log beside the table, not dlt's ``scd2`` strategy: scd2 retires every record missing
from a load, which an incremental load always is; and it would change the shape of the table that
the canonical build, reconciliation and remediation read. Here the raw tables stay as they are,
and the copy is a catch-up (every load id newer than the newest recorded one), so a by-id repair,
a replay, or a run that died between its load and its copy is caught by the next call.

Retention (``history.raw_days``): a version is dropped once a newer one has been recorded for
longer than that; a record's newest version is always kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from sync_platform.core.sql import ident, placeholders, quoted, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.raw_schema import DLT_SYSTEM_COLUMNS, LOAD_ID, RAW_TABLES, RawTable

SCHEMA = "raw_history"
RECORDED_AT, VERSION_HASH = "recorded_at", "version_hash"


def history_table(crm: str, table: str) -> str:
    return f"{crm}_{table}"


@dataclass(frozen=True)
class Recorded:
    crm: str
    table: str
    versions: int  # new versions kept
    rows_seen: int  # rows the new loads wrote


class RawHistory:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def record(self, crm: str, tables: Sequence[str] | None = None) -> list[Recorded]:
        """Keep the versions written by every load not yet recorded, for ``tables`` of ``crm`` (all)."""
        done = []
        with self.warehouse.session():  # a handful of small statements per table: one connection
            for name, raw in RAW_TABLES[crm].items():
                if tables is not None and name not in tables:
                    continue
                if self.warehouse.table_exists(f"raw_{crm}", name):
                    done.append(self._record(raw))
        return done

    def _record(self, raw: RawTable) -> Recorded:
        target = history_table(raw.crm, raw.table)
        source = ident(f"raw_{raw.crm}", raw.table)
        exists = self.warehouse.table_exists(SCHEMA, target)
        if exists:
            newest = self.warehouse.query(
                sql("SELECT max({load}) FROM {table}", load=quoted(LOAD_ID), table=ident(SCHEMA, target))
            )[0][0]
        else:
            newest = None
        rows = self.warehouse.read_frame(
            sql("SELECT * FROM {table} WHERE {load} > ?", table=source, load=quoted(LOAD_ID)), [newest or ""]
        )
        if rows.is_empty():
            return Recorded(raw.crm, raw.table, 0, 0)
        fields = sorted(c for c in rows.columns if c not in DLT_SYSTEM_COLUMNS)
        versions = rows.with_columns(
            rows.select(fields).hash_rows(seed=0).reinterpret(signed=True).alias(VERSION_HASH),
            pl.lit(datetime.now(UTC), pl.Datetime("us", "UTC")).alias(RECORDED_AT),
        )
        if exists:
            versions = self._new_versions(raw, target, versions)
        if versions.height:
            self.warehouse.write_frame(versions, SCHEMA, target, disposition="append")
        return Recorded(raw.crm, raw.table, versions.height, rows.height)

    def _new_versions(self, raw: RawTable, target: str, versions: pl.DataFrame) -> pl.DataFrame:
        """Drop rows equal to their record's newest kept version (a re-read, a replay)."""
        key = raw.key_column
        ids = versions[key].cast(pl.String).to_list()
        found = []
        for start in range(0, len(ids), 1000):
            group = ids[start : start + 1000]
            found.append(
                self.warehouse.read_frame(
                    sql(
                        "SELECT {key} AS __id, {hash} AS __hash, {at} AS __at, {load} AS __load FROM {table} "
                        "WHERE {key} IN ({marks})",
                        key=quoted(key),
                        hash=quoted(VERSION_HASH),
                        at=quoted(RECORDED_AT),
                        load=quoted(LOAD_ID),
                        table=ident(SCHEMA, target),
                        marks=placeholders(len(group)),
                    ),
                    group,
                )
            )
        kept = (
            pl.concat(found)
            .sort("__at", "__load")
            .group_by("__id")
            .agg(pl.col("__hash").last())  # each record's newest kept version
            .with_columns(pl.col("__id").cast(pl.String))
            if found
            else pl.DataFrame(schema={"__id": pl.String, "__hash": pl.Int64})
        )
        return (
            versions.with_columns(pl.col(key).cast(pl.String).alias("__id"))
            .join(kept, on="__id", how="left")
            .filter(pl.col("__hash").is_null() | (pl.col("__hash") != pl.col(VERSION_HASH)))
            .drop("__id", "__hash")
        )

    def versions(self, crm: str, table: str, record_id: str) -> pl.DataFrame:
        """Every kept version of one record, oldest first."""
        raw = RAW_TABLES[crm][table]
        target = history_table(crm, table)
        if not self.warehouse.table_exists(SCHEMA, target):
            return pl.DataFrame()
        return self.warehouse.read_frame(
            sql(
                "SELECT * FROM {table} WHERE CAST({key} AS VARCHAR) = ? ORDER BY {at}, {load}",
                table=ident(SCHEMA, target),
                key=quoted(raw.key_column),
                at=quoted(RECORDED_AT),
                load=quoted(LOAD_ID),
            ),
            [str(record_id)],
        )

    def as_of(self, crm: str, table: str, before: datetime, ids: Sequence[str] | None = None) -> pl.DataFrame:
        """The newest version of each record recorded before ``before`` (of ``ids``, or all): one query."""
        raw = RAW_TABLES[crm][table]
        target = history_table(crm, table)
        if not self.warehouse.table_exists(SCHEMA, target):
            return pl.DataFrame()
        only = (
            sql(
                "AND CAST({key} AS VARCHAR) IN ({marks})",
                key=quoted(raw.key_column),
                marks=placeholders(len(ids)),
            )
            if ids
            else sql("")
        )
        return self.warehouse.read_frame(
            sql(
                "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {key} "
                "ORDER BY {at} DESC, {load} DESC) AS __n FROM {table} WHERE {at} < ? {only}) AS v "
                "WHERE __n = 1",
                key=quoted(raw.key_column),
                at=quoted(RECORDED_AT),
                load=quoted(LOAD_ID),
                table=ident(SCHEMA, target),
                only=only,
            ),
            [before, *(ids or [])],
        ).drop("__n")

    def purge(self, crm: str, days: int, now: datetime | None = None) -> int:
        """Drop versions superseded by a newer one recorded more than ``days`` ago; rows deleted."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
        removed = 0
        for table, raw in RAW_TABLES[crm].items():
            target = history_table(crm, table)
            if not self.warehouse.table_exists(SCHEMA, target):
                continue
            # a version is gone once a newer one of the same record was recorded before the cutoff:
            # the version current at the cutoff (and every later one) stays answerable
            statement = sql(
                "DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM {table} AS newer WHERE "
                "newer.{key} = {table}.{key} AND newer.{at} > {table}.{at} AND newer.{at} < ?)",
                table=ident(SCHEMA, target),
                key=quoted(raw.key_column),
                at=quoted(RECORDED_AT),
            )
            before = self.warehouse.query(sql("SELECT count(*) FROM {table}", table=ident(SCHEMA, target)))[
                0
            ][0]
            self.warehouse.query(statement, (cutoff,))
            after = self.warehouse.query(sql("SELECT count(*) FROM {table}", table=ident(SCHEMA, target)))[0][
                0
            ]
            removed += before - after
        return removed
