"""The in-warehouse comparison agrees with classify, on DuckDB and on the real PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import duckdb
import polars as pl
import psycopg2
import psycopg2.extras
import pytest

from sync_platform.core.sql import Fragment
from sync_platform.core.warehouse import Warehouse
from sync_platform.reconcile import classify, content_hash, content_hash_sql
from sync_platform.reconcile.sql import bisect, classify_in_warehouse, classify_sql
from sync_platform_tests.reconcile.conftest import BASE, seeded_pair

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def drifted() -> tuple[pl.DataFrame, pl.DataFrame]:
    source, warehouse, _ = seeded_pair(n=20_000, missing=20, extra=25, stale=30, diverged=35, ahead=10)
    # a record listed twice and a null cursor on each side, handled as classify handles them
    source = pl.concat(
        [
            source,
            source.filter(pl.col("id") == "003019999").with_columns(
                pl.col("cursor") - pl.duration(hours=1), pl.lit(5, pl.UInt64).alias("content_hash")
            ),
        ]
    )
    source = source.with_columns(
        pl.when(pl.col("id") == "003019990").then(None).otherwise(pl.col("cursor")).alias("cursor")
    )
    warehouse = warehouse.with_columns(
        pl.when(pl.col("id") == "003019991").then(None).otherwise(pl.col("cursor")).alias("cursor")
    )
    return source, warehouse


def _duckdb_with(source: pl.DataFrame, warehouse: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.register("s_frame", source)
    conn.register("w_frame", warehouse)
    conn.execute("CREATE TABLE listing AS SELECT * FROM s_frame")
    conn.execute("CREATE TABLE raw_contacts AS SELECT * FROM w_frame")
    return conn


def test_duckdb_bisection_equals_classify_and_fetches_only_differing_buckets(drifted):
    source, warehouse = drifted
    expected = classify(source, warehouse)
    conn = _duckdb_with(source, warehouse)
    diff, stats = bisect(conn, "listing", "raw_contacts", buckets=64, fanout=16, leaf_rows=2_000)
    assert diff.differences.equals(expected.differences)
    assert diff.counts == expected.counts and diff.ahead == expected.ahead
    assert (diff.source_records, diff.warehouse_records) == (
        expected.source_records,
        expected.warehouse_records,
    )
    assert diff.drift_share == pytest.approx(expected.drift_share)
    assert stats.rounds >= 2 and 0 < stats.rows_fetched < 2_000
    assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchall() == [
        (0,)
    ]  # cleaned up


def test_dense_drift_is_fetched_without_pointless_rounds():
    source, warehouse, _ = seeded_pair(n=2_000, diverged=800)
    diff, stats = bisect(
        _duckdb_with(source, warehouse), "listing", "raw_contacts", buckets=8, fanout=32, leaf_rows=10
    )
    assert diff.differences.equals(classify(source, warehouse).differences)
    # 40 % drift: the 256 buckets of round two still hold nearly every row, so it fetches then
    assert stats.rounds == 2 and stats.differing_buckets[0] == 8


def test_agreeing_sides_cost_one_round_and_no_rows(drifted):
    source = drifted[0].unique("id", keep="first", maintain_order=True)
    diff, stats = bisect(_duckdb_with(source, source), "listing", "raw_contacts")
    assert diff.differences.is_empty() and diff.drift_share == 0 and diff.source_records == 20_000
    assert stats.rounds == 1 and stats.rows_fetched == 0


def test_queries_as_sides_and_a_duckdb_warehouse(drifted, tmp_path):
    source, warehouse = drifted
    wh = Warehouse("duckdb", path=tmp_path / "w.duckdb")
    with wh.connect() as conn:
        conn.register("s_frame", source)
        conn.register(
            "w_frame", warehouse.with_columns(pl.lit(None, pl.Datetime("us", "UTC")).alias("deleted_at"))
        )
        conn.execute("CREATE TABLE listing AS SELECT * FROM s_frame")
        conn.execute("CREATE TABLE raw AS SELECT * FROM w_frame")
        conn.execute("UPDATE raw SET deleted_at = cursor WHERE id = '003000100'")  # soft-deleted: missing
    live = "(SELECT id, cursor, content_hash FROM raw WHERE deleted_at IS NULL)"
    with pytest.raises(ValueError, match="not a safe SQL identifier"):
        classify_in_warehouse(wh, "listing", live)  # a query as a plain str: only names are taken as text
    diff = classify_in_warehouse(wh, "listing", Fragment(live))
    assert diff.counts["missing"] == classify(source, warehouse).counts["missing"] + 1
    assert "003000100" in diff.ids("missing")


@pytest.fixture(scope="module")
def postgres() -> Iterator[psycopg2.extensions.connection]:
    name = f"sync_platform_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        yield conn
    finally:
        conn.close()
        cur = admin.cursor()
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def _load_pg(conn, table: str, frame: pl.DataFrame) -> None:
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {table} (id TEXT, cursor TIMESTAMPTZ, content_hash BIGINT)")
    psycopg2.extras.execute_values(cur, f"INSERT INTO {table} VALUES %s", frame.rows(), page_size=5000)
    conn.commit()


def test_postgres_bisection_equals_classify(drifted, postgres):
    source, warehouse = drifted
    _load_pg(postgres, "listing", source)
    _load_pg(postgres, "raw_contacts", warehouse)
    expected = classify(source, warehouse)
    diff, stats = bisect(
        postgres, "listing", "raw_contacts", dialect="postgres", buckets=64, fanout=16, leaf_rows=2_000
    )
    assert diff.differences.equals(expected.differences)
    assert diff.counts == expected.counts and diff.ahead == expected.ahead
    assert (diff.source_records, diff.warehouse_records) == (
        expected.source_records,
        expected.warehouse_records,
    )
    assert stats.rounds >= 2 and stats.rows_fetched < 2_000
    assert classify_sql(postgres, "listing", "listing", dialect="postgres").differences.is_empty()


def test_postgres_hashes_content_like_the_process_does(postgres):
    frame = pl.DataFrame(
        {
            "name": ["Zoë", "", None],
            "opt_out": [True, False, None],
            "employees": [42, -7, None],
            "score": [2.5, 3.0, None],
            "modified": [
                datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
                datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC),
                None,
            ],
            "naive": [datetime(2025, 3, 1, 12), None, None],
            "born": [date(1980, 5, 17), None, None],
        }
    )
    kinds = {
        "name": "string",
        "opt_out": "bool",
        "employees": "int",
        "score": "float",
        "modified": "datetime",
        "naive": "datetime",
        "born": "date",
    }
    cur = postgres.cursor()
    cur.execute("SET TIME ZONE 'America/New_York'")  # the session zone must not matter
    cur.execute(
        "CREATE TEMP TABLE rows (n INT, name TEXT, opt_out BOOLEAN, employees BIGINT, "
        "score DOUBLE PRECISION, modified TIMESTAMPTZ, naive TIMESTAMP, born DATE)"
    )
    psycopg2.extras.execute_values(
        cur, "INSERT INTO rows VALUES %s", [(i, *row) for i, row in enumerate(frame.rows())]
    )
    cur.execute(f"SELECT {content_hash_sql(kinds, 'postgres')} FROM rows ORDER BY n")
    assert [r[0] for r in cur.fetchall()] == content_hash(frame, list(kinds)).to_list()
    postgres.rollback()


def test_bad_arguments():
    with pytest.raises(ValueError):
        classify_sql(duckdb.connect(), "a", "b", dialect="oracle")
    with pytest.raises(ValueError):
        classify_sql(duckdb.connect(), "a", "b", fanout=1)
    assert BASE.tzinfo is UTC
