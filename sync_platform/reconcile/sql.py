"""The same classification run inside the warehouse, for data that outgrows one process.

Both sides (tables or queries in one database, each with id, cursor and content_hash) are reduced
in SQL to rows with a bucket key (a hash of the id) and a row digest (a hash of id, cursor and
content hash). Buckets are compared by row count and sum of digests; only the rows of
buckets that differ are split into finer buckets (bucket = key % B·F^k, so each nests in its
parent), reladiff-style, until few enough rows remain to fetch and classify in process with
``classify``. Only bucket counts cross the wire until then: agreeing data costs one aggregate per
side, drift costs in proportion to the buckets it touches. The SQL is the same on DuckDB and
PostgreSQL except for the hash function (DuckDB ``hash``, PostgreSQL ``hashtextextended``), which
only has to agree with itself inside one database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from sync_platform.core.sql import Fragment, ident, integer, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.reconcile.diff import CLASSES, CURSOR, ID, Diff, classify
from sync_platform.reconcile.hashing import DUCKDB, HASH_COLUMN, POSTGRES, epoch_ms_sql

_MASK_63 = integer(0x7FFF_FFFF_FFFF_FFFF)
_TEXT = {DUCKDB: Fragment("VARCHAR"), POSTGRES: Fragment("TEXT")}


def _key_sql(text: Fragment, dialect: str) -> Fragment:
    """A 63-bit hash of a text expression, stable within the database it runs in."""
    raw = sql("hash({text})" if dialect == DUCKDB else "hashtextextended({text}, 0)", text=text)
    return sql("CAST({raw} & {mask} AS BIGINT)", raw=raw, mask=_MASK_63)


def _relation(relation: Fragment | str) -> Fragment:
    """A side to compare: a Fragment (a parenthesised query built with ``core.sql``) as it is, or a
    table name, optionally schema-qualified, which must be a valid identifier."""
    return relation if isinstance(relation, Fragment) else ident(*relation.split("."))


@dataclass
class Bisection:
    """How the comparison went: buckets compared and found differing per round, rows fetched."""

    rounds: int = 0
    buckets: list[int] = field(default_factory=list)
    differing_buckets: list[int] = field(default_factory=list)
    rows_fetched: int = 0


class _Session:
    """Statements on one connection (DuckDB's own, or a psycopg2 cursor), so temp tables stay visible."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.dialect = dialect
        self.cur = conn if isinstance(conn, duckdb.DuckDBPyConnection) else conn.cursor()

    def run(self, statement: Fragment) -> list[tuple]:
        self.cur.execute(statement)
        return self.cur.fetchall() if self.cur.description else []

    def frame(self, statement: Fragment, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        if self.dialect == DUCKDB:
            out = pl.from_arrow(self.cur.sql(statement).to_arrow_table())
            assert isinstance(out, pl.DataFrame)
            return out.cast(schema)  # type: ignore[arg-type]
        return pl.DataFrame(self.run(statement), schema=schema, orient="row")


def classify_sql(
    conn: Any,
    source: Fragment | str,
    warehouse: Fragment | str,
    *,
    dialect: str = DUCKDB,
    buckets: int = 4096,
    fanout: int = 32,
    leaf_rows: int = 50_000,
    max_rounds: int = 4,
) -> Diff:
    """``classify`` of two relations in one database (see ``bisect`` for the parameters)."""
    return bisect(
        conn,
        source,
        warehouse,
        dialect=dialect,
        buckets=buckets,
        fanout=fanout,
        leaf_rows=leaf_rows,
        max_rounds=max_rounds,
    )[0]


def classify_in_warehouse(
    warehouse: Warehouse, source: Fragment | str, target: Fragment | str, **options: Any
) -> Diff:
    """``classify_sql`` on a connection of ``warehouse`` (its kind is the dialect)."""
    with warehouse.connect() as conn:
        return classify_sql(conn, source, target, dialect=warehouse.kind, **options)


def bisect(
    conn: Any,
    source: Fragment | str,
    warehouse: Fragment | str,
    *,
    dialect: str = DUCKDB,
    buckets: int = 4096,
    fanout: int = 32,
    leaf_rows: int = 50_000,
    max_rounds: int = 4,
) -> tuple[Diff, Bisection]:
    """Compare ``source`` and ``warehouse`` (table names, or parenthesised queries with id, cursor,
    content_hash composed with ``core.sql``) by bucket checksums; return the Diff and how it went.

    Round one compares ``buckets`` buckets; each further round splits the differing ones ``fanout``
    ways. Rows are fetched when at most ``leaf_rows`` remain, after ``max_rounds``, or when a split
    no longer halves them (the drift is dense: finer buckets would not exclude much).
    """
    if dialect not in (DUCKDB, POSTGRES):
        raise ValueError(f"dialect must be {DUCKDB!r} or {POSTGRES!r}, got {dialect!r}")
    if buckets < 1 or fanout < 2 or max_rounds < 1:
        raise ValueError("need buckets >= 1, fanout >= 2, max_rounds >= 1")
    session = _Session(conn, dialect)
    tag = uuid.uuid4().hex[:12]
    relations = {"source": _relation(source), "warehouse": _relation(warehouse)}
    sides = {"source": ident(f"_reconcile_s_{tag}"), "warehouse": ident(f"_reconcile_w_{tag}")}
    created: list[Fragment] = []
    try:
        for side, relation in relations.items():
            session.run(_lean_table_sql(sides[side], relation, dialect))
            created.append(sides[side])
        (source_records,), (warehouse_records,) = (
            session.run(sql("SELECT count(*) FROM {t}", t=t))[0] for t in sides.values()
        )
        stats = Bisection()
        modulus, keys, previous_rows = buckets, None, None
        while True:
            found = ident(f"_reconcile_k{stats.rounds}_{tag}")
            session.run(
                sql(
                    "CREATE TEMP TABLE {found} AS {buckets}",
                    found=found,
                    buckets=_round_sql(sides, modulus, keys),
                )
            )
            created.append(found)
            stats.rounds += 1
            stats.buckets.append(modulus if keys is None else stats.differing_buckets[-1] * fanout)
            n_buckets, rows = session.run(
                sql("SELECT count(*), coalesce(sum(sn + wn), 0) FROM {found}", found=found)
            )[0]
            stats.differing_buckets.append(int(n_buckets))
            rows = int(rows)
            if n_buckets == 0:
                frames = [_empty(), _empty()]
                break
            dense = previous_rows is not None and rows > previous_rows / 2
            if rows <= leaf_rows or stats.rounds >= max_rounds or dense:
                fetch = "SELECT id, ms, h FROM {t} WHERE k % {modulus} IN (SELECT b FROM {found})"
                frames = [
                    session.frame(sql(fetch, t=t, modulus=integer(modulus), found=found), _LEAN)
                    for t in sides.values()
                ]
                stats.rows_fetched = sum(f.height for f in frames)
                break
            keys, previous_rows = (found, modulus), rows
            modulus *= fanout
    finally:
        for table in reversed(created):
            session.run(sql("DROP TABLE IF EXISTS {table}", table=table))
    part = classify(*(_as_listing(f) for f in frames))
    # ids listed more than once are among the fetched rows: count each once, as classify does
    source_records = int(source_records) - (frames[0].height - part.source_records)
    warehouse_records = int(warehouse_records) - (frames[1].height - part.warehouse_records)
    counts = {cls: part.counts[cls] for cls in CLASSES}
    diff = Diff(
        differences=part.differences,
        source_records=source_records,
        warehouse_records=warehouse_records,
        counts=counts,
        drift_share=sum(counts.values()) / max(source_records, 1),
        ahead=part.ahead,
    )
    return diff, stats


_LEAN = {"id": pl.String, "ms": pl.Int64, "h": pl.Int64}


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=_LEAN)


def _as_listing(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        pl.col("id").alias(ID),
        pl.from_epoch("ms", "ms").dt.replace_time_zone("UTC").alias(CURSOR),
        pl.col("h").cast(pl.UInt64).alias(HASH_COLUMN),
    )


def _lean_table_sql(name: Fragment, relation: Fragment, dialect: str) -> Fragment:
    """(id, ms, h) with its bucket key and row digest. No de-duplication here (it would cost a sort
    of everything): an id listed twice makes its bucket differ, so ``classify`` resolves it among
    the fetched rows."""
    text = _TEXT[dialect]
    if dialect == DUCKDB:
        digest = sql("CAST(hash(id, ms, h) & {mask} AS BIGINT)", mask=_MASK_63)
    else:
        digest = _key_sql(
            sql(
                "id || ':' || coalesce(CAST(ms AS {text}), '') || ':' || coalesce(CAST(h AS {text}), '')",
                text=text,
            ),
            dialect,
        )
    return sql(
        "CREATE TEMP TABLE {name} AS "
        "SELECT id, ms, h, {key} AS k, {digest} AS d FROM ("
        "SELECT CAST(id AS {text}) AS id, {ms} AS ms, "
        "CAST({hash} AS BIGINT) AS h FROM {relation} AS listed) AS lean",
        name=name,
        key=_key_sql(Fragment("id"), dialect),
        digest=digest,
        text=text,
        ms=epoch_ms_sql(ident(CURSOR), dialect),
        hash=ident(HASH_COLUMN),
        relation=relation,
    )


def _round_sql(sides: dict[str, Fragment], modulus: int, keys: tuple[Fragment, int] | None) -> Fragment:
    """Buckets (at ``modulus``) whose count or digest sum differ, restricted to the previous round's."""
    where = (
        sql("WHERE k % {modulus} IN (SELECT b FROM {found})", modulus=integer(keys[1]), found=keys[0])
        if keys
        else Fragment("")
    )
    s, w = (
        sql(
            "SELECT k % {modulus} AS b, count(*) AS n, sum(d) AS x FROM {t} {where} GROUP BY k % {modulus}",
            modulus=integer(modulus),
            t=t,
            where=where,
        )
        for t in sides.values()
    )
    return sql(
        "SELECT coalesce(s.b, w.b) AS b, coalesce(s.n, 0) AS sn, coalesce(w.n, 0) AS wn "
        "FROM ({s}) AS s FULL OUTER JOIN ({w}) AS w ON s.b = w.b "
        "WHERE s.n IS NULL OR w.n IS NULL OR s.n <> w.n OR s.x <> w.x",
        s=s,
        w=w,
    )
