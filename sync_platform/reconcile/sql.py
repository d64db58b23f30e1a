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

from sync_platform.core.warehouse import Warehouse
from sync_platform.reconcile.diff import CLASSES, CURSOR, ID, Diff, classify
from sync_platform.reconcile.hashing import DUCKDB, HASH_COLUMN, POSTGRES, epoch_ms_sql

_MASK_63 = 0x7FFF_FFFF_FFFF_FFFF
_TEXT = {DUCKDB: "VARCHAR", POSTGRES: "TEXT"}


def _key_sql(text: str, dialect: str) -> str:
    """A 63-bit hash of a text expression, stable within the database it runs in."""
    raw = f"hash({text})" if dialect == DUCKDB else f"hashtextextended({text}, 0)"
    return f"CAST({raw} & {_MASK_63} AS BIGINT)"


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

    def run(self, sql: str) -> list[tuple]:
        self.cur.execute(sql)
        return self.cur.fetchall() if self.cur.description else []

    def frame(self, sql: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        if self.dialect == DUCKDB:
            out = pl.from_arrow(self.cur.sql(sql).to_arrow_table())
            assert isinstance(out, pl.DataFrame)
            return out.cast(schema)  # type: ignore[arg-type]
        return pl.DataFrame(self.run(sql), schema=schema, orient="row")


def classify_sql(conn: Any, source: str, warehouse: str, *, dialect: str = DUCKDB, buckets: int = 4096,
                 fanout: int = 32, leaf_rows: int = 50_000, max_rounds: int = 4) -> Diff:
    """``classify`` of two relations in one database (see ``bisect`` for the parameters)."""
    return bisect(conn, source, warehouse, dialect=dialect, buckets=buckets, fanout=fanout,
                  leaf_rows=leaf_rows, max_rounds=max_rounds)[0]


def classify_in_warehouse(warehouse: Warehouse, source: str, target: str, **options: Any) -> Diff:
    """``classify_sql`` on a connection of ``warehouse`` (its kind is the dialect)."""
    with warehouse.connect() as conn:
        return classify_sql(conn, source, target, dialect=warehouse.kind, **options)


def bisect(conn: Any, source: str, warehouse: str, *, dialect: str = DUCKDB, buckets: int = 4096,
           fanout: int = 32, leaf_rows: int = 50_000, max_rounds: int = 4) -> tuple[Diff, Bisection]:
    """Compare ``source`` and ``warehouse`` (table names or parenthesised queries with id, cursor,
    content_hash: trusted SQL, not user input) by bucket checksums; return the Diff and how it went.

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
    sides = {"source": f"_reconcile_s_{tag}", "warehouse": f"_reconcile_w_{tag}"}
    created: list[str] = []
    try:
        for side, relation in (("source", source), ("warehouse", warehouse)):
            session.run(_lean_table_sql(sides[side], relation, dialect))
            created.append(sides[side])
        (source_records,), (warehouse_records,) = (session.run(f"SELECT count(*) FROM {t}")[0]
                                                    for t in sides.values())
        stats = Bisection()
        modulus, keys, previous_rows = buckets, None, None
        while True:
            found = f"_reconcile_k{stats.rounds}_{tag}"
            session.run(f"CREATE TEMP TABLE {found} AS {_round_sql(sides, modulus, keys)}")
            created.append(found)
            stats.rounds += 1
            stats.buckets.append(modulus if keys is None else stats.differing_buckets[-1] * fanout)
            n_buckets, rows = session.run(f"SELECT count(*), coalesce(sum(sn + wn), 0) FROM {found}")[0]
            stats.differing_buckets.append(int(n_buckets))
            rows = int(rows)
            if n_buckets == 0:
                frames = [_empty(), _empty()]
                break
            dense = previous_rows is not None and rows > previous_rows / 2
            if rows <= leaf_rows or stats.rounds >= max_rounds or dense:
                frames = [session.frame(f"SELECT id, ms, h FROM {t} WHERE k % {modulus} IN (SELECT b FROM {found})",
                                        _LEAN) for t in sides.values()]
                stats.rows_fetched = sum(f.height for f in frames)
                break
            keys, previous_rows = (found, modulus), rows
            modulus *= fanout
    finally:
        for table in reversed(created):
            session.run(f"DROP TABLE IF EXISTS {table}")
    part = classify(*(_as_listing(f) for f in frames))
    # ids listed more than once are among the fetched rows: count each once, as classify does
    source_records = int(source_records) - (frames[0].height - part.source_records)
    warehouse_records = int(warehouse_records) - (frames[1].height - part.warehouse_records)
    counts = {cls: part.counts[cls] for cls in CLASSES}
    diff = Diff(differences=part.differences, source_records=source_records, warehouse_records=warehouse_records,
                counts=counts, drift_share=sum(counts.values()) / max(source_records, 1), ahead=part.ahead)
    return diff, stats


_LEAN = {"id": pl.String, "ms": pl.Int64, "h": pl.Int64}


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=_LEAN)


def _as_listing(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.col("id").alias(ID),
                        pl.from_epoch("ms", "ms").dt.replace_time_zone("UTC").alias(CURSOR),
                        pl.col("h").cast(pl.UInt64).alias(HASH_COLUMN))


def _lean_table_sql(name: str, relation: str, dialect: str) -> str:
    """(id, ms, h) with its bucket key and row digest. No de-duplication here (it would cost a sort
    of everything): an id listed twice makes its bucket differ, so ``classify`` resolves it among
    the fetched rows."""
    text = _TEXT[dialect]
    if dialect == DUCKDB:
        digest = f"CAST(hash(id, ms, h) & {_MASK_63} AS BIGINT)"
    else:
        digest = _key_sql(f"id || ':' || coalesce(CAST(ms AS {text}), '') || ':' || coalesce(CAST(h AS {text}), '')",
                          dialect)
    return (f"CREATE TEMP TABLE {name} AS "
            f"SELECT id, ms, h, {_key_sql('id', dialect)} AS k, {digest} AS d FROM ("
            f"SELECT CAST(id AS {text}) AS id, {epoch_ms_sql(CURSOR, dialect)} AS ms, "
            f"CAST({HASH_COLUMN} AS BIGINT) AS h FROM {relation} AS listed) AS lean")


def _round_sql(sides: dict[str, str], modulus: int, keys: tuple[str, int] | None) -> str:
    """Buckets (at ``modulus``) whose count or digest sum differ, restricted to the previous round's."""
    where = f"WHERE k % {keys[1]} IN (SELECT b FROM {keys[0]})" if keys else ""
    s, w = (f"SELECT k % {modulus} AS b, count(*) AS n, sum(d) AS x FROM {t} {where} GROUP BY k % {modulus}"
            for t in sides.values())
    return (f"SELECT coalesce(s.b, w.b) AS b, coalesce(s.n, 0) AS sn, coalesce(w.n, 0) AS wn "
            f"FROM ({s}) AS s FULL OUTER JOIN ({w}) AS w ON s.b = w.b "
            f"WHERE s.n IS NULL OR w.n IS NULL OR s.n <> w.n OR s.x <> w.x")
