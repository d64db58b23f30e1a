"""Where synced data lands: DuckDB (embedded default) or PostgreSQL (production), by configuration.

The same object gives dlt its destination and gives the platform a short-lived DB-API
connection for its own tables (dead letters, audit) and for metadata queries.

DuckDB admits one process at a time: a writer's file lock shuts out every other process, readers
included, and a second opener fails at once with "Conflicting lock is held". So every process
takes **the warehouse's turn** (:meth:`Warehouse.turn`, a lock file next to the database) before it
opens the file, and waits for it instead of failing. This travels with the code, whatever
launched it (the UI, ``dagster job execute``, schedules, sensors, the CLI) and whatever Dagster
instance it runs on; the ``warehouse_writes`` pool only spares the waiting processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dlt
from filelock import FileLock, Timeout

from sync_platform.core.settings import Settings, load_settings
from sync_platform.core.sql import Fragment, quoted, sql

if TYPE_CHECKING:
    import polars as pl
    from dlt.common.pipeline import LoadInfo

log = logging.getLogger(__name__)

DUCKDB, POSTGRES = "duckdb", "postgres"
WAIT_NOTICE_SECONDS = 30.0  # how often a process waiting for its turn says so


class WarehouseBusy(RuntimeError):
    """Another process has the embedded warehouse's turn and the caller chose not to wait."""


_TURNS: dict[str, FileLock] = {}
_TURNS_GUARD = threading.Lock()


def _turn_lock(path: Path) -> FileLock:
    """One lock object per database file and process: re-entrant in a thread, exclusive across
    threads and processes; the OS releases it if the process dies."""
    key = str(path.resolve())
    with _TURNS_GUARD:
        if key not in _TURNS:
            path.parent.mkdir(parents=True, exist_ok=True)
            _TURNS[key] = FileLock(key + ".lock")
        return _TURNS[key]


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
    # a loaded package's job files are the rows themselves (listings hold emails): keep none on disk
    os.environ.setdefault("LOAD__DELETE_COMPLETED_JOBS", "true")


def run_pipeline(pipeline: dlt.Pipeline, data: Any, **kwargs: Any) -> LoadInfo:
    """``pipeline.run(data)`` that loads ``data``, or fails loudly.

    After a failed load, dlt keeps the package pending, and the next ``run`` of that pipeline
    loads the old package, skips the new data and returns normally. Dropping what is pending first
    makes every run load what it was given (a failed run left its cursor where it was, so nothing
    of it is lost: it is read again). Failed jobs raise instead of passing for a success.
    """
    pipeline.abort_packages()  # what drop_pending_packages (deprecated in dlt 1.30) called
    info = pipeline.run(data, **kwargs)
    info.raise_on_failed_jobs()
    return info


@dataclass(frozen=True)
class Warehouse:
    """``kind`` is ``duckdb`` (``path``) or ``postgres`` (``dsn``, e.g. ``postgresql://user@host:5432/db``)."""

    kind: str
    path: Path | None = None
    dsn: str | None = field(default=None, repr=False)  # holds the password
    # where "waiting for the warehouse" is said (a Dagster step passes its logger); default: the log
    notify: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    # the connection of an open ``session()`` in this thread, shared by every ``connect()`` inside it
    _session: threading.local = field(default_factory=threading.local, repr=False, compare=False, hash=False)

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
            return dlt.destinations.duckdb(str(self.path))  # a description: nothing opened or created
        from dlt.destinations.impl.postgres.configuration import PostgresCredentials

        credentials = PostgresCredentials(self.dsn)
        if credentials.password is None:
            credentials.password = ""  # trust, peer or .pgpass authentication: none in the DSN
        credentials.resolve()
        return dlt.destinations.postgres(credentials=credentials)

    @property
    def placeholder(self) -> str:
        return "?" if self.kind == DUCKDB else "%s"

    def pipeline(self, name: str, dataset: str) -> dlt.Pipeline:
        """A dlt pipeline into this warehouse, working under ``<data>/dlt_pipelines/<name>``.

        Creating a pipeline creates its folder, and processes that did it at once (test workers, the
        parallel steps of a run) failed with ``FileExistsError``: creation is serialized across processes.
        On DuckDB it also waits for the warehouse's turn, under which every run of a pipeline happens:
        a run's dlt may wipe and rebuild the working folder (restoring state from the warehouse), and a
        second run of the same CRM that created its pipeline meanwhile wrote into that folder and
        failed the first ("Directory not empty"; three runs launched at once from the UI).
        """
        pipelines_dir = load_settings().data_dir / "dlt_pipelines"
        pipelines_dir.mkdir(parents=True, exist_ok=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # DuckDB creates the file, not its folder
        with self.turn(), FileLock(str(pipelines_dir / ".create.lock")):
            return dlt.pipeline(
                pipeline_name=name,
                destination=self.destination(),
                dataset_name=dataset,
                pipelines_dir=str(pipelines_dir),
            )

    def described_pipeline(self, name: str, dataset: str) -> dlt.Pipeline:
        """The pipeline ``name`` as a description (its name, destination and dataset), for asset specs.

        Every process that loads the definitions (webserver, daemon, each run and step) builds one per
        CRM. dlt creates a working folder for any pipeline, so this one is made in a scratch folder,
        removed at once: loading the definitions writes nothing in the data directory. Never run it.
        """
        with tempfile.TemporaryDirectory(prefix="sync_platform_described_") as scratch:
            described = dlt.pipeline(
                pipeline_name=name,
                destination=self.destination(),
                dataset_name=dataset,
                pipelines_dir=scratch,
            )
        described.deactivate()  # dlt made it the current pipeline; its folder is gone
        return described

    @contextlib.contextmanager
    def turn(self, *, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the embedded warehouse for this process; PostgreSQL takes concurrent writers and
        needs no turn.

        ``wait=False`` raises :class:`WarehouseBusy` at once if another process has it (sensors
        skip their tick rather than delay a run); otherwise this waits, saying so through
        ``on_wait`` (default: the log) every ``WAIT_NOTICE_SECONDS``. Re-entrant in a thread.
        """
        if self.kind != DUCKDB:
            yield
            return
        assert self.path is not None
        lock = _turn_lock(self.path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not wait:
                raise WarehouseBusy(
                    f"the DuckDB warehouse {self.path.name} is in use by another process"
                ) from None
            self._wait_for(lock, on_wait or self.notify or log.info)
        try:
            yield
        finally:
            lock.release()

    def _wait_for(self, lock: FileLock, say: Callable[[str], None]) -> None:
        assert self.path is not None
        while True:
            say(f"waiting for the DuckDB warehouse {self.path.name}: another process has its turn")
            try:
                lock.acquire(timeout=WAIT_NOTICE_SECONDS)
                return
            except Timeout:
                continue

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """One connection for every ``connect()`` (and query, read, write) inside, in one turn.

        Opening the DuckDB file costs tens of milliseconds; a step that runs a dozen small statements
        pays it once. Statements inside still commit one by one (autocommit); the connection is
        committed and closed when the session ends.
        """
        if getattr(self._session, "conn", None) is not None:
            yield
            return
        with self.connect() as conn:
            self._session.conn = conn
            try:
                yield
            finally:
                self._session.conn = None

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A DB-API connection, committed on success and always closed (DuckDB: in this process's turn)."""
        shared = getattr(self._session, "conn", None)
        if shared is not None:  # inside a session: its connection, closed by the session
            yield shared
            return
        with self.turn():
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
        pipeline = self.pipeline(f"frames_{dataset}", dataset)
        run_pipeline(pipeline, frame.to_arrow(), table_name=table, write_disposition=disposition)

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
