"""Settings shared by the three sources: look-back, deletes, future stamps, and the sync report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from sync_platform.core.errors import CrmRequestError, ErrorKind, RejectedRecord
from sync_platform.core.sql import ident, join, placeholders, quoted, sql
from sync_platform.ingest.sources.http import RequestStats

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DELETED_AT = "deleted_at"  # soft-delete marker every raw table carries


def require_known(crm: str, objects: Sequence[str], known: Mapping[str, object]) -> None:
    """Fail at source construction, naming the bad object and the valid ones."""
    unknown = set(objects) - set(known)
    if unknown:
        raise ValueError(f"unknown {crm} object(s) {sorted(unknown)}; choose from {sorted(known)}")


def chunks(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    """Ids in request-sized groups, duplicates dropped, order kept."""
    unique = list(dict.fromkeys(str(i) for i in ids if i is not None and str(i)))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]


def by_id_tables(crm: str, ids: Mapping[str, Sequence[str]], known: Mapping[str, object]) -> list[str]:
    """The tables a by-id read covers (those given ids), failing on unknown names like the sources do."""
    require_known(crm, list(ids), known)
    return [table for table in known if ids.get(table)]


def last_loaded(table: str, key: str, columns: Mapping[str, str], ids: Sequence[str]) -> dict[str, dict]:
    """Rows ``ids`` of ``table`` as the running pipeline's destination holds them, by id, with the
    source's field names (datetimes as ISO text, as ``to_arrow`` reads them).

    A CRM that reports a delete by id only (Dataverse) needs them for its tombstone: dlt's merge
    replaces whole rows, so a tombstone of id and ``deleted_at`` alone would null every other
    column, where a Salesforce or HubSpot delete keeps the last values. Empty for ids never
    loaded and before the table's first load.
    """
    import dlt
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    pipeline = dlt.current.pipeline()
    naming = pipeline.default_schema.naming
    names = list(columns)
    found: dict[str, dict] = {}
    with pipeline.sql_client() as client:
        for group in chunks(ids, 500):
            statement = sql(
                "SELECT {columns} FROM {table} WHERE {key} IN ({marks})",
                columns=join([quoted(naming.normalize_path(n)) for n in names]),
                table=ident(client.dataset_name, naming.normalize_table_identifier(table)),
                key=quoted(naming.normalize_path(key)),
                marks=placeholders(len(group), "%s"),  # dlt's SQL clients take %s on every destination
            )
            try:
                rows = client.execute_sql(statement, *group) or []
            except DatabaseUndefinedRelation:
                return {}  # not loaded yet
            for row in rows:
                values = {name: _as_text(value) for name, value in zip(names, row, strict=True)}
                found[str(values[key])] = values
    return found


def _as_text(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


@dataclass
class ResourceReport:
    """What one resource saw in one run (pages, newest change), for lag and metadata."""

    pages: int = 0
    rows: int = 0
    deleted: int = 0
    reread: int = 0  # rows at or before the previous high-water mark: look-back re-reads or late commits
    newest_change: datetime | None = None
    cursor_start: datetime | None = None
    previous_high_water: datetime | None = None
    started_at: float | None = None  # monotonic, for the CRM's records/s
    last_page_at: float | None = None
    not_found: set[str] = field(default_factory=set)  # by-id reads: ids the CRM no longer returns at all
    rejects: list[RejectedRecord] = field(
        default_factory=list
    )  # records left out of their page (dead letters)
    read_mode: str = "cursor"  # Dynamics: "change_tracking", or "modifiedon" when the table is not tracked
    deletes_visible: bool = True
    # a cursor read's allowance for stamps ahead of the CRM's clock; rows past it are "future-stamped"
    future_tolerance: timedelta | None = None
    future_stamped: dict[str, datetime] = field(default_factory=dict)  # record id -> its stamp
    cursor_clamped_to: datetime | None = None  # where the saved cursor was held instead

    def start(
        self,
        start: datetime | None,
        look_back_seconds: float = 0.0,
        future_tolerance_seconds: float | None = None,
    ) -> None:
        self.started_at = time.monotonic()
        if future_tolerance_seconds is not None:
            # never more than the look-back: the next read starts at the cursor less the look-back,
            # and that start must not pass the CRM's now, or changes made after this read are skipped
            self.future_tolerance = timedelta(seconds=min(future_tolerance_seconds, look_back_seconds))
        if start is None:
            return
        self.cursor_start = start
        if start > EPOCH:
            self.previous_high_water = start + timedelta(seconds=look_back_seconds)

    def saw(
        self, rows: int, deleted: int, newest: datetime | None, cursor_values: list | None = None
    ) -> None:
        self.pages += 1
        self.last_page_at = time.monotonic()
        self.rows += rows
        self.deleted += deleted
        if cursor_values and self.previous_high_water is not None:
            self.reread += sum(1 for v in cursor_values if v is not None and v <= self.previous_high_water)
        if newest is not None and (self.newest_change is None or newest > self.newest_change):
            self.newest_change = newest


@dataclass
class SyncReport:
    """Shared by a source's resources and read back by the Dagster asset after the run."""

    crm: str
    stats: RequestStats = field(default_factory=RequestStats)
    resources: dict[str, ResourceReport] = field(default_factory=dict)
    # where a resource's rejected records go (table, rejects) when its read ends: the dead-letter queue
    dead_letters: Callable[[str, list[RejectedRecord]], None] | None = None

    def resource(self, name: str) -> ResourceReport:
        return self.resources.setdefault(name, ResourceReport())

    def finish(self, table: str) -> None:
        """The end of one resource's read, called inside its generator: its rejects are handed to
        ``dead_letters`` before dlt can load the page and commit the cursor past them. A sink that
        fails fails the extraction, so the cursor stays and the next run reads the records again."""
        rejects = self.resource(table).rejects
        if rejects and self.dead_letters is not None:
            self.dead_letters(table, rejects)

    def crm_now(self) -> datetime:
        """The CRM's clock as its latest response told it (HTTP ``Date``); ours if it told nothing."""
        return self.stats.server_time or datetime.now(UTC)

    def _ceiling(self, table: str) -> datetime | None:
        tolerance = self.resource(table).future_tolerance
        return None if tolerance is None else self.crm_now() + tolerance

    def watch_future(self, table: str, page: pa.Table, cursor: str, key: str) -> None:
        """Note the rows of ``page`` stamped past the CRM's now plus the tolerance (an admin script's
        stamp, a clock gone wrong). They load like any row; ``cap_cursor`` keeps them out of the cursor."""
        ceiling = self._ceiling(table)
        if ceiling is None or not page.num_rows:
            return
        late = page.filter(pc.greater(page[cursor], pa.scalar(ceiling, page.schema.field(cursor).type)))
        found = self.resource(table).future_stamped
        for record_id, stamp in zip(late[key].to_pylist(), late[cursor].to_pylist(), strict=True):
            found[str(record_id)] = stamp

    def capped(self, table: str, value: datetime) -> datetime:
        """``value``, or the CRM's now plus the tolerance if it is later (noted as the clamp)."""
        ceiling = self._ceiling(table)
        if ceiling is None or value <= ceiling:
            return value
        self.resource(table).cursor_clamped_to = ceiling
        return ceiling

    def records_per_second(self) -> float:
        """Throughput of the whole extraction (dlt interleaves resources, so per-object time overlaps)."""
        starts = [r.started_at for r in self.resources.values() if r.started_at is not None]
        ends = [r.last_page_at for r in self.resources.values() if r.last_page_at is not None]
        rows = sum(r.rows for r in self.resources.values())
        if not starts or not ends or max(ends) <= min(starts):
            return 0.0
        return rows / (max(ends) - min(starts))

    def as_metadata(self, name: str) -> dict[str, Any]:
        r = self.resource(name)
        return {
            "pages": r.pages,
            "rows_extracted": r.rows,
            "rows_deleted_at_source": r.deleted,
            "rows_reread": r.reread,
            "rows_rejected": len(r.rejects),
            "cursor_start": r.cursor_start.isoformat() if r.cursor_start else None,
            "newest_change": r.newest_change.isoformat() if r.newest_change else None,
        }


def cap_cursor(updated: Any, report: SyncReport, table: str) -> None:
    """At the end of a read, hold dlt's cursor (``dlt.sources.incremental``) at the CRM's now plus the
    tolerance: one future-stamped record would otherwise carry it, and every later run's start,
    past every real change until the clock caught up. A cursor saved that far ahead earlier is
    pulled back too. ``advance`` pins the value dlt commits with the load (our reads already
    filter by the start, so dlt's own filter has nothing left to do)."""
    last = updated.get_state().get("last_value")
    if last is None:
        return
    held = report.capped(table, last)
    if held != last:
        updated.advance(held)


def page_records(page: Any, key: str, crm: str, url: str, method: str = "GET") -> list[dict]:
    """The records of one page (``records``, ``results`` or ``value``). A 200 whose body lacks
    them is a broken page, a ``parse`` failure: taken for an empty last page, it ended a read early
    and the run passed with records missing."""
    if not isinstance(page, dict) or not isinstance(page.get(key), list):
        raise CrmRequestError(crm, ErrorKind.PARSE, f"the page has no {key!r} list", method=method, path=url)
    return page[key]


def paging_link(link: object, base_url: str, crm: str, path_only: bool = False) -> str:
    """The next page's URL, only if it stays on the configured host: the bearer token goes with it.

    Dataverse's ``@odata.nextLink`` is absolute and Salesforce's ``nextRecordsUrl`` a path; a page
    naming another host (or a path such as ``@evil.example/``) would send the token there.
    """
    base = urlsplit(base_url)
    well_formed = (
        isinstance(link, str) and bool(link) and (not path_only or link.startswith("/") and link[1:2] != "/")
    )
    target = urlsplit(urljoin(base_url, link)) if well_formed else None  # type: ignore[arg-type]
    if target is None or (target.scheme, target.netloc) != (base.scheme, base.netloc):
        raise CrmRequestError(
            crm,
            ErrorKind.PARSE,
            "a paging link points away from the configured host; not followed",
            path=base.path,
        )
    return target.geturl()
