"""Dynamics 365 (Dataverse) source: contacts, accounts and incidents through change tracking.

The first run reads every row with ``Prefer: odata.track-changes`` and keeps the delta token
from ``@odata.deltaLink`` in dlt's resource state (stored in the destination with the load, so
it only advances when the data landed). Later runs call the delta link: changed rows, plus
``$deletedEntity`` rows for deletions. Change tracking sees every change, including edits that
did not move ``modifiedon``. An expired token falls back to a full re-read (merge keeps it
idempotent; deletions in the gap are left to reconciliation).

A table whose change tracking is off answers ``odata.track-changes`` with
ChangeTrackingNotEnabledForEntity. With ``change_tracking="auto"`` the reader notes that once
(in the resource state) and reads ``modifiedon ge <cursor - look-back>`` ordered by
``modifiedon, <id>`` instead, keeping its own cursor in the same resource state (a dlt
``incremental`` cannot share the resource: it would filter out the rows change tracking
returns with an unmoved ``modifiedon``). Deletions are invisible then: a warning says so, the
metadata shows it, and reconciliation's "extra" class finds them.

``dynamics_by_id_source`` reads given ids (``$filter=Microsoft.Dynamics.CRM.In(...)`` on the
primary key, chunked) into the same tables with the same hints, without touching the delta
token. Dataverse does not return deleted rows at all, so those ids come back as not found.
"""

from __future__ import annotations  # fine here: no resource takes a dlt incremental (the state is its own)

from collections.abc import Iterator, Mapping, Sequence

import dlt
import pyarrow as pa

from sync_platform.ingest.sources.arrow import columns_hint
from sync_platform.ingest.sources.auth import TokenProvider
from sync_platform.ingest.sources.common import DELETED_AT, SyncReport, by_id_tables, chunks, require_known
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy

from .helpers import by_id_pages, emit, guid, http_client, modified_since, tracked_changes
from .settings import CURSOR, IDS_PER_QUERY, OBJECTS, PAGE_SIZE


@dlt.source(name="dynamics", max_table_nesting=0)
def dynamics_source(
    api_url: str = dlt.config.value,
    token_url: str = dlt.config.value,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    scope: str | None = None,
    page_size: int = PAGE_SIZE,
    hard_delete: bool = False,
    objects: Sequence[str] = tuple(OBJECTS),
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
    change_tracking: str = "auto",
    look_back_seconds: float = 300.0,
    future_tolerance_seconds: float = 300.0,
) -> Iterator:
    """Contacts, accounts and incidents of one Dataverse environment.

    Args:
        api_url: ``https://<org>.crm.dynamics.com/api/data/v9.2`` (or the sandbox's).
        token_url: ``https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token``.
        client_id: app registration id (``SOURCES__DYNAMICS__CLIENT_ID``).
        client_secret: app registration secret (``SOURCES__DYNAMICS__CLIENT_SECRET``).
        scope: ``https://<org>.crm.dynamics.com/.default``.
        page_size: rows per page (``odata.maxpagesize``, 5,000 at most).
        hard_delete: delete rows removed at the source instead of stamping ``deleted_at``.
        objects: the tables to read, of ``settings.OBJECTS``.
        policy: retries, throttling and the daily budget reserve.
        report: collects what each resource saw (a new one when not given).
        auth: a token provider replacing the client-credentials flow.
        change_tracking: ``auto`` (tracked, falling back to ``modifiedon`` for an untracked
            table), ``on`` (an untracked table fails the run) or ``off`` (always ``modifiedon``).
        look_back_seconds: ``modifiedon`` reads start this far before the saved cursor.
        future_tolerance_seconds: how far past the environment's clock a ``modifiedon`` read takes a
            stamp (at most ``look_back_seconds``); a later one is reported and kept out of the cursor.

    Yields:
        One merge resource per table, keyed by the entity's primary key; its delta token (or
        ``modifiedon`` cursor) lives in the resource's state.
    """
    require_known("Dynamics", objects, OBJECTS)
    if change_tracking not in ("auto", "on", "off"):
        raise ValueError(f"change_tracking must be auto, on or off, got {change_tracking!r}")
    if not 1 <= page_size <= PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {PAGE_SIZE}, got {page_size}")
    report = report or SyncReport("dynamics")
    client = http_client(token_url, client_id, client_secret, scope, policy, report, auth)
    for table in objects:
        entity_set, pk, columns = OBJECTS[table]
        yield _resource(_entity_pages, table, hard_delete)(
            client,
            api_url.rstrip("/"),
            entity_set,
            pk,
            columns,
            page_size,
            hard_delete,
            report,
            table,
            change_tracking,
            look_back_seconds,
            future_tolerance_seconds,
        )


@dlt.source(name="dynamics", max_table_nesting=0)
def dynamics_by_id_source(
    ids: Mapping[str, Sequence[str]],
    api_url: str = dlt.config.value,
    token_url: str = dlt.config.value,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    scope: str | None = None,
    page_size: int = PAGE_SIZE,
    hard_delete: bool = False,
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
) -> Iterator:
    """The given records (``{"contacts": [guid, ...]}``) into the incremental source's tables.

    Same source name, so the same dlt schema; no change tracking, so the delta token stays put.
    Ids Dataverse does not return (deleted, never existed, not a GUID) land in
    ``report.resource(table).not_found``.

    Args:
        ids: table -> GUIDs to read.
        api_url: as for ``dynamics_source``; so are ``token_url``, the credentials, ``scope``,
            ``page_size``, ``hard_delete``, ``policy``, ``report`` and ``auth``.

    Yields:
        One merge resource per table given ids, declared exactly as ``dynamics_source``'s.
    """
    tables = by_id_tables("Dynamics", ids, OBJECTS)
    report = report or SyncReport("dynamics")
    client = http_client(token_url, client_id, client_secret, scope, policy, report, auth)
    for table in tables:
        entity_set, pk, columns = OBJECTS[table]
        yield _resource(_entity_by_id, table, hard_delete)(
            client,
            api_url.rstrip("/"),
            entity_set,
            pk,
            columns,
            list(ids[table]),
            page_size,
            hard_delete,
            report,
            table,
        )


def _resource(pages, table: str, hard_delete: bool):
    """One table's dlt resource: the tracked and the by-id reads must declare it identically."""
    _, pk, columns = OBJECTS[table]
    hints = columns_hint(columns, pk, CURSOR)
    hints[DELETED_AT] = {"data_type": "timestamp", "nullable": True}
    if hard_delete:
        hints["_deleted"] = {"data_type": "bool", "nullable": True, "hard_delete": True}
    return dlt.resource(pages, name=table, primary_key=pk, write_disposition="merge", columns=hints)


def _entity_by_id(
    client: CrmHttpClient,
    api_url: str,
    entity_set: str,
    pk: str,
    columns: dict[str, str],
    ids: list[str],
    page_size: int,
    hard_delete: bool,
    report: SyncReport,
    table: str,
) -> Iterator[pa.Table]:
    """The given rows of one entity set; ids Dataverse does not return go to ``not_found``.

    Args:
        client: the environment's HTTP client.
        api_url: the Web API root without its trailing slash.
        entity_set: the entity set to read (``contacts``).
        pk: its primary key attribute (``contactid``).
        columns: the attributes to select and their declared types.
        ids: GUIDs (any case, braces allowed; others are reported not found, never asked).
        page_size: rows per page (``odata.maxpagesize``).
        hard_delete: whether the table carries the ``_deleted`` hard-delete column.
        report: collects what the read saw, and the ids not found.
        table: the resource's table name (``contacts``).

    Yields:
        One Arrow table per non-empty page.
    """
    resource = report.resource(table)
    resource.start(None)
    wanted = {guid(i): i for i in dict.fromkeys(ids) if guid(i)}
    resource.not_found.update(i for i in ids if not guid(i))
    for group in chunks(list(wanted), IDS_PER_QUERY):
        seen: set[str] = set()
        for rows in by_id_pages(client, f"{api_url}/{entity_set}", pk, columns, group, page_size):
            seen.update(guid(str(row.get(pk) or "")) for row in rows)
            yield from emit(rows, [], pk, columns, hard_delete, report, table)
        resource.not_found.update(wanted[g] for g in group if g not in seen)
    report.finish(table)


def _entity_pages(
    client: CrmHttpClient,
    api_url: str,
    entity_set: str,
    pk: str,
    columns: dict[str, str],
    page_size: int,
    hard_delete: bool,
    report: SyncReport,
    table: str,
    change_tracking: str = "on",
    look_back_seconds: float = 300.0,
    future_tolerance_seconds: float = 300.0,
) -> Iterator[pa.Table]:
    """Rows of one entity set changed since the last run: tracked, or by ``modifiedon`` when untracked.

    The delta token (or the ``modifiedon`` cursor) lives in this resource's dlt state, committed
    with the load.

    Args:
        client: the environment's HTTP client.
        api_url: the Web API root without its trailing slash.
        entity_set: the entity set to read (``contacts``).
        pk: its primary key attribute (``contactid``).
        columns: the attributes to select and their declared types.
        page_size: rows per page (``odata.maxpagesize``).
        hard_delete: whether deletions are emitted with ``_deleted`` (hard delete) set.
        report: collects what the read saw.
        table: the resource's table name (``contacts``).
        change_tracking: ``on``, ``off`` or ``auto`` (see ``dynamics_source``).
        look_back_seconds: how far before the saved ``modifiedon`` cursor an untracked read starts.
        future_tolerance_seconds: how far past the environment's clock a ``modifiedon`` read takes a stamp.

    Yields:
        One Arrow table per non-empty page, then tombstones for deleted rows.
    """
    state = dlt.current.resource_state()
    url = f"{api_url}/{entity_set}"
    by_modifiedon = (
        pk,
        columns,
        page_size,
        hard_delete,
        report,
        table,
        state,
        look_back_seconds,
        future_tolerance_seconds,
    )
    if change_tracking == "off" or (change_tracking == "auto" and state.get("tracking") == "off"):
        yield from modified_since(client, url, *by_modifiedon)
    else:
        yield from tracked_changes(client, url, *by_modifiedon, change_tracking)
    report.finish(table)
