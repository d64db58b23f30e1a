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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from sync_platform.core.sql import Fragment, ident, placeholders, quoted, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.raw_schema import DLT_SYSTEM_COLUMNS, LOAD_ID, RAW_TABLES, RawTable, raw_column
from sync_platform.ops.echoes import EchoLedger, as_text

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
    changed_fields: dict[str, int] = field(default_factory=dict)  # CRM field -> records that changed it
    examples: dict[str, list[str]] = field(default_factory=dict)  # CRM field -> a few of those ids
    live_rows: int = 0  # the raw table's live records after the load


class RawHistory:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def record(
        self, crm: str, tables: Sequence[str] | None = None, diff_above: float = 0.0
    ) -> list[Recorded]:
        """Keep the versions written by every load not yet recorded, for ``tables`` of ``crm`` (all).

        Per-field change counts (``Recorded.changed_fields``) are computed when more than
        ``diff_above`` of the object's live records changed: a share no field can exceed unless
        that many records changed (the mass-change limit) needs no field-level comparison.
        """
        done = []
        with self.warehouse.session():  # a handful of small statements per table: one connection
            present = self._tables(f"raw_{crm}", SCHEMA)
            for name, raw in RAW_TABLES[crm].items():
                if tables is not None and name not in tables:
                    continue
                if (f"raw_{crm}", name) in present:
                    exists = (SCHEMA, history_table(crm, name)) in present
                    done.append(self._record(raw, exists, diff_above))
        return done

    def _tables(self, *schemas: str) -> set[tuple[str, str]]:
        """(schema, table) of every table in ``schemas``: one catalog query instead of one per table."""
        return {
            (schema, table)
            for schema, table in self.warehouse.query(
                sql(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_schema IN ({marks})",
                    marks=placeholders(len(schemas)),
                ),
                schemas,
            )
        }

    def _record(self, raw: RawTable, exists: bool, diff_above: float) -> Recorded:
        target = history_table(raw.crm, raw.table)
        source = ident(f"raw_{raw.crm}", raw.table)
        newest, newest_cursor = None, None
        if exists:
            newest, newest_cursor = self.warehouse.query(
                sql(
                    "SELECT max({load}), max({cursor}) FROM {table}",
                    load=quoted(LOAD_ID),
                    cursor=quoted(raw.cursor_column),
                    table=ident(SCHEMA, target),
                )
            )[0]
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
        live = self.warehouse.query(
            sql(
                "SELECT count(*) FROM {table} WHERE {deleted} IS NULL",
                table=source,
                deleted=quoted("deleted_at"),
            )
        )[0][0]
        changed: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        if exists:
            # whole previous rows only when a mass change is possible; otherwise only the hashes of
            # the rows that can equal a kept version (see _may_repeat)
            whole = versions.height > diff_above * live
            candidates = versions if whole else _may_repeat(raw, versions, newest_cursor)
            ids = candidates[raw.key_column].cast(pl.String).to_list()
            previous = self._previous(raw, target, ids, whole) if ids else pl.DataFrame()
            ours = EchoLedger(self.warehouse).recent(raw.crm, raw.crm_object, ids) if whole else {}
            versions, changed, examples = _compare(raw, versions, previous, ours)
        if versions.height:
            self.warehouse.write_frame(versions, SCHEMA, target, disposition="append")
        return Recorded(raw.crm, raw.table, versions.height, rows.height, changed, examples, int(live))

    def _previous(self, raw: RawTable, target: str, ids: list[str], whole: bool = True) -> pl.DataFrame:
        """Each record's newest kept version, of ``ids`` (records never seen have none); without
        ``whole``, only its key and version hash."""
        columns = (
            Fragment("*")
            if whole
            else sql(
                "{key}, {hash}, {at}, {load}",
                key=quoted(raw.key_column),
                hash=quoted(VERSION_HASH),
                at=quoted(RECORDED_AT),
                load=quoted(LOAD_ID),
            )
        )
        found = []
        for start in range(0, len(ids), 1000):
            group = ids[start : start + 1000]
            found.append(
                self.warehouse.read_frame(
                    sql(
                        "SELECT {columns} FROM {table} WHERE {key} IN ({marks})",
                        columns=columns,
                        key=quoted(raw.key_column),
                        table=ident(SCHEMA, target),
                        marks=placeholders(len(group)),
                    ),
                    group,
                )
            )
        kept = pl.concat(found, how="diagonal_relaxed") if found else pl.DataFrame()
        if kept.is_empty():
            return kept
        return kept.sort(RECORDED_AT, LOAD_ID).group_by(raw.key_column, maintain_order=True).last()

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

    def versions_of(self, crm: str, table: str, ids: Sequence[str]) -> pl.DataFrame:
        """Every kept version of ``ids``, oldest first per record: one query for a batch of records
        whose "before" times differ (each write-back change has its own)."""
        raw = RAW_TABLES[crm][table]
        target = history_table(crm, table)
        if not ids or not self.warehouse.table_exists(SCHEMA, target):
            return pl.DataFrame()
        return self.warehouse.read_frame(
            sql(
                "SELECT * FROM {table} WHERE CAST({key} AS VARCHAR) IN ({marks}) "
                "ORDER BY {key}, {at}, {load}",
                table=ident(SCHEMA, target),
                key=quoted(raw.key_column),
                marks=placeholders(len(ids)),
                at=quoted(RECORDED_AT),
                load=quoted(LOAD_ID),
            ),
            list(ids),
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


def _compare(
    raw: RawTable,
    versions: pl.DataFrame,
    previous: pl.DataFrame,
    ours: dict[tuple[str, str], set[str | None]] | None = None,
) -> tuple[pl.DataFrame, dict[str, int], dict[str, list[str]]]:
    """The new versions worth keeping (not equal to the newest kept one), and per CRM field how many
    records changed it since their previous version, with a few example ids. A field whose new value
    is one write-back put there (``ours``: (id, CRM field) -> values written) is our echo, not a
    change from the CRM, and is not counted."""
    key = raw.key_column
    if previous.is_empty():
        return versions, {}, {}
    before = previous.select(
        pl.col(key).cast(pl.String).alias("__id"),
        *(pl.col(c).alias(f"{c}__prev") for c in previous.columns if c != key),
    )
    joined = versions.with_columns(pl.col(key).cast(pl.String).alias("__id")).join(
        before, on="__id", how="left"
    )
    new = joined.filter(
        pl.col(f"{VERSION_HASH}__prev").is_null() | (pl.col(f"{VERSION_HASH}__prev") != pl.col(VERSION_HASH))
    )
    seen_before = new.filter(pl.col(f"{VERSION_HASH}__prev").is_not_null())
    compared = [c for c in versions.columns if _is_content(raw, c) and f"{c}__prev" in joined.columns]
    changed, examples = {}, {}
    if seen_before.height and compared:
        flags = seen_before.select(
            "__id", *(pl.col(c).ne_missing(pl.col(f"{c}__prev")).alias(c) for c in compared)
        )
        if ours:
            flags = _without_echoes(raw, flags, seen_before, compared, ours)
        counts = flags.select(pl.col(c).sum() for c in compared).row(0, named=True)
        for column, n in counts.items():
            if n:
                changed[column] = int(n)
                examples[column] = flags.filter(pl.col(column)).sort("__id")["__id"].head(5).to_list()
    return new.select(versions.columns), changed, examples


def _without_echoes(
    raw: RawTable,
    flags: pl.DataFrame,
    rows: pl.DataFrame,
    compared: list[str],
    ours: dict[tuple[str, str], set[str | None]],
) -> pl.DataFrame:
    crm_fields = {raw_column(name): name for name in raw.fields}
    ids = rows["__id"].to_list()
    echoed = []
    for column in compared:
        crm_field = crm_fields.get(column)
        if crm_field is None or not any(field == crm_field for _, field in ours):
            continue
        mask = [
            as_text(value) in ours.get((record_id, crm_field), ())
            for record_id, value in zip(ids, rows[column].to_list(), strict=True)
        ]
        echoed.append((pl.col(column) & ~pl.Series(mask, dtype=pl.Boolean)).alias(column))
    return flags.with_columns(echoed) if echoed else flags


def _may_repeat(raw: RawTable, versions: pl.DataFrame, newest_cursor: object) -> pl.DataFrame:
    """The rows that can equal a version already kept: those whose cursor is not newer than every
    kept cursor (a look-back re-read, a replay, a by-id fetch). The cursor is part of the version
    hash, so a row stamped later than anything kept is a new version without looking it up; that
    spares the lookup, a scan of the history's keys, on most incremental loads."""
    if newest_cursor is None or raw.cursor_column not in versions.columns:
        return versions
    cursor = pl.col(raw.cursor_column)
    return versions.filter(
        cursor.is_null() | (cursor <= pl.lit(newest_cursor, versions.schema[raw.cursor_column]))
    )


def _is_content(raw: RawTable, column: str) -> bool:
    """A CRM field a person or an import edits: not dlt's, not ours, not a stamp that moves on every edit."""
    if column in DLT_SYSTEM_COLUMNS or column in (
        RECORDED_AT,
        VERSION_HASH,
        raw.key_column,
        raw.cursor_column,
    ):
        return False
    return not any(part in column for part in ("modif", "modstamp"))
