"""Where synced data lands: DuckDB (embedded default) or PostgreSQL (production), by configuration.

The same object gives dlt its destination and gives the platform a short-lived DB-API
connection for its own tables (dead letters, audit) and for metadata queries. DuckDB lets one
process write at a time and its file lock shuts out readers elsewhere, so connections are
opened per step and closed at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dlt

from sync_platform.core.settings import Settings, load_settings
from sync_platform.core.sql import Fragment, quoted, sql

if TYPE_CHECKING:
    import polars as pl

DUCKDB, POSTGRES = "duckdb", "postgres"

# DuckDB's default cap is 80 % of RAM and it keeps what it touches, so a load's peak memory grew
# with its row count (the staging insert, then the merge's dedup window over every staged row).
# Capped, the merge spills to disk instead: on 1 M contacts it takes ~20 s longer (7 s -> 25 s),
# small next to the API time of the extraction, and the load's peak no longer depends on N.
DUCKDB_LOAD_CONFIG = {"memory_limit": "128MB"}

# a column type as DuckDB describes it (BIGINT, TIMESTAMP WITH TIME ZONE, DECIMAL(38,1), VARCHAR[],
# STRUCT("x y" BIGINT, z VARCHAR)): words, digits, ( ) [ ] and commas, or double-quoted field names.
# No quote outside a name, no semicolon, no comment marker: it cannot end the statement.
_COLUMN_TYPE = re.compile(r'(?:[A-Za-z0-9_ ,()\[\]]|"[^"]*")+')


def apply_dlt_defaults() -> None:
    """dlt settings every load needs; set as environment defaults, so an operator's own value wins."""
    # Arrow loads skip dlt's row normalizer, which would otherwise stamp each row with its load id;
    # the id is what makes "rows this run wrote" exact (and gives every raw row its lineage)
    os.environ.setdefault("NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID", "true")
    os.environ.setdefault("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", json.dumps(DUCKDB_LOAD_CONFIG))


@dataclass(frozen=True)
class Warehouse:
    """``kind`` is ``duckdb`` (``path``) or ``postgres`` (``dsn``, e.g. ``postgresql://user@host:5432/db``)."""

    kind: str
    path: Path | None = None
    dsn: str | None = field(default=None, repr=False)  # holds the password

    def __post_init__(self) -> None:
        if self.kind == DUCKDB and self.path is None:
            raise ValueError("a DuckDB warehouse needs a path")
        if self.kind == POSTGRES and not self.dsn:
            raise ValueError("a PostgreSQL warehouse needs a dsn (SYNC_PLATFORM_POSTGRES_DSN)")
        if self.kind not in (DUCKDB, POSTGRES):
            raise ValueError(f"SYNC_PLATFORM_WAREHOUSE must be 'duckdb' or 'postgres', got {self.kind!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Warehouse:
        if settings.warehouse_kind == POSTGRES:
            return cls(POSTGRES, dsn=settings.postgres_dsn)
        return cls(settings.warehouse_kind, path=settings.warehouse_path)

    @classmethod
    def from_env(cls) -> Warehouse:
        """For the CLI and scripts; Dagster code receives the warehouse as a resource."""
        return cls.from_settings(load_settings())

    def destination(self) -> Any:
        apply_dlt_defaults()  # every dlt load (syncs, listings, repairs) runs with the same memory cap
        if self.kind == DUCKDB:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return dlt.destinations.duckdb(str(self.path))
        from dlt.destinations.impl.postgres.configuration import PostgresCredentials

        credentials = PostgresCredentials(self.dsn)
        if credentials.password is None:
            credentials.password = ""  # trust, peer or .pgpass authentication: none in the DSN
        credentials.resolve()
        return dlt.destinations.postgres(credentials=credentials)

    @property
    def placeholder(self) -> str:
        return "?" if self.kind == DUCKDB else "%s"

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A DB-API connection, committed on success and always closed."""
        if self.kind == DUCKDB:
            import duckdb

            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = duckdb.connect(str(self.path))
        else:
            import psycopg2

            conn = psycopg2.connect(self.dsn)
        try:
            yield conn
            conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        finally:
            conn.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement; ``?`` placeholders work on both engines."""
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute(sql.replace("?", self.placeholder), tuple(params))
            return cur.fetchall() if cur.description else []

    def read_frame(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """A query's result as a polars frame (Arrow from DuckDB; DB-API rows from PostgreSQL).

        ``?`` placeholders work on both engines, as in ``query``.
        """
        import polars as pl

        with self.connect() as conn:
            if self.kind == DUCKDB:
                return pl.from_arrow(conn.sql(sql, params=list(params) or None).to_arrow_table())
            if params:
                return pl.read_database(
                    sql.replace("?", self.placeholder), conn, execute_options={"parameters": tuple(params)}
                )
            return pl.read_database(sql, conn)

    def write_frame(
        self, frame: pl.DataFrame, dataset: str, table: str, disposition: str = "replace"
    ) -> None:
        """Write a frame: ``replace`` the table or ``append`` to it (new columns are added).

        DuckDB takes the Arrow table directly, in the same connection (milliseconds; dlt's
        extract → normalize → load cycle costs about a second per call, which the canonical and
        reconcile steps pay many times per run). PostgreSQL goes through dlt's Arrow path.
        """
        if disposition not in ("replace", "append"):
            raise ValueError(f"disposition must be 'replace' or 'append', got {disposition!r}")
        if self.kind == DUCKDB:
            self._write_duckdb(frame, dataset, table, disposition)
            return
        pipeline = dlt.pipeline(
            pipeline_name=f"frames_{dataset}",
            destination=self.destination(),
            dataset_name=dataset,
            pipelines_dir=str(load_settings().data_dir / "dlt_pipelines"),
        )
        pipeline.run(frame.to_arrow(), table_name=table, write_disposition=disposition)

    def _write_duckdb(self, frame: pl.DataFrame, dataset: str, table: str, disposition: str) -> None:
        import polars as pl

        # a column of nulls only has no type a table can hold: store it as text, as dlt would
        frame = frame.with_columns(pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t == pl.Null)
        target = quoted(dataset, table)
        with self.connect() as conn:
            conn.execute(sql("CREATE SCHEMA IF NOT EXISTS {schema}", schema=quoted(dataset)))
            conn.register("incoming_frame", frame.to_arrow())
            exists = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                [dataset, table],
            ).fetchone()[0]
            if disposition == "replace" or not exists:
                conn.execute(
                    sql("CREATE OR REPLACE TABLE {target} AS SELECT * FROM incoming_frame", target=target)
                )
            else:
                have = {
                    r[0]
                    for r in conn.execute(
                        "SELECT column_name FROM information_schema.columns WHERE "
                        "table_schema = ? AND table_name = ?",
                        [dataset, table],
                    ).fetchall()
                }
                types = dict(
                    conn.execute("SELECT column_name, column_type FROM (DESCRIBE incoming_frame)").fetchall()
                )
                for column in frame.columns:
                    if column not in have:
                        conn.execute(
                            sql(
                                "ALTER TABLE {target} ADD COLUMN {column} {type}",
                                target=target,
                                column=quoted(column),
                                type=_column_type(types[column]),
                            )
                        )
                conn.execute(sql("INSERT INTO {target} BY NAME SELECT * FROM incoming_frame", target=target))
            conn.unregister("incoming_frame")

    def table_exists(self, schema: str, table: str) -> bool:
        rows = self.query(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            (schema, table),
        )
        return bool(rows and rows[0][0])


def _column_type(described: str) -> Fragment:
    """A type DuckDB reported for a frame's column, checked before it goes into ALTER TABLE."""
    if not _COLUMN_TYPE.fullmatch(described):
        raise ValueError(f"unexpected column type from DuckDB: {described!r}")
    return Fragment(described)
