"""HubSpot source: contacts, companies and tickets, incremental through the search API.

Search sorts by the last-modified property with ``GTE`` (ties are never lost) from a start
stepped back by a look-back window. Search refuses to page past 10,000 results, so the reader
restarts its window at the last stamp it saw before reaching the cap (re-reading that stamp;
merge on ``id`` dedups); if more than a window's worth of records share one stamp it pages that
stamp by id instead. Archived records come from the list endpoint with ``archived=true``.

``hubspot_by_id_source`` reads given ids through ``batch/read`` (100 per call; the ones not
live are asked again with ``archived=true``) into the same tables with the same hints, without
touching the incremental cursor.
"""

# No `from __future__ import annotations` here: dlt finds the incremental parameter by its
# runtime annotation, and a string annotation silently turns every run into a full read.

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

import dlt
import pyarrow as pa

from sync_platform.ingest.sources.arrow import columns_hint
from sync_platform.ingest.sources.auth import TokenProvider
from sync_platform.ingest.sources.common import (
    DELETED_AT,
    EPOCH,
    SyncReport,
    by_id_tables,
    cap_cursor,
    chunks,
    require_known,
)
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy

from .helpers import Clients, batch_read, changed_since, http_clients, records_page
from .settings import BATCH_READ, ID, OBJECTS


@dlt.source(name="hubspot", max_table_nesting=0)
def hubspot_source(
    host: str = "https://api.hubapi.com",
    access_token: str | None = dlt.secrets.value,
    client_id: str | None = None,
    client_secret: str | None = None,
    refresh_token: str | None = None,
    look_back_seconds: float = 300.0,
    future_tolerance_seconds: float = 300.0,
    requests_per_10s: int | None = 100,
    search_per_second: int = 5,
    hard_delete: bool = False,
    objects: Sequence[str] = tuple(OBJECTS),
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
) -> Iterator:
    """Contacts, companies and tickets of one HubSpot portal.

    Args:
        host: the API host (or the sandbox's base URL).
        access_token: private-app token (``SOURCES__HUBSPOT__ACCESS_TOKEN``); or give
            ``client_id``/``client_secret``/``refresh_token`` for OAuth.
        look_back_seconds: how far before the saved cursor each run starts re-reading.
        future_tolerance_seconds: how far past the portal's clock a last-modified stamp may be (at
            most ``look_back_seconds``); a later one is reported and kept out of the cursor.
        requests_per_10s: client-side ceiling, set just under the portal's limit (100 on
            Free/Starter, 190 on Pro/Enterprise).
        search_per_second: the search API's ceiling (HubSpot allows about 5/s), paced with headroom.
        hard_delete: delete archived records instead of stamping ``deleted_at``.
        objects: the tables to read, of ``settings.OBJECTS``.
        policy: retries, throttling and the daily budget reserve.
        report: collects what each resource saw (a new one when not given).
        auth: a token provider replacing the token or OAuth settings.

    Yields:
        One merge resource per table, primary key ``id``, incremental on its last-modified property.
    """
    require_known("HubSpot", objects, OBJECTS)
    report = report or SyncReport("hubspot")
    base = host.rstrip("/")
    clients = http_clients(
        base,
        access_token,
        client_id,
        client_secret,
        refresh_token,
        requests_per_10s,
        search_per_second,
        policy,
        report,
        auth,
    )
    for table in objects:
        object_type, cursor, columns = OBJECTS[table]
        yield _resource(_object_pages, table, hard_delete)(
            clients,
            base,
            object_type,
            cursor,
            columns,
            report,
            table,
            future_tolerance_seconds,
            dlt.sources.incremental(cursor, initial_value=EPOCH, lag=look_back_seconds, range_start="closed"),
        )


@dlt.source(name="hubspot", max_table_nesting=0)
def hubspot_by_id_source(
    ids: Mapping[str, Sequence[str]],
    host: str = "https://api.hubapi.com",
    access_token: str | None = dlt.secrets.value,
    client_id: str | None = None,
    client_secret: str | None = None,
    refresh_token: str | None = None,
    requests_per_10s: int | None = 100,
    hard_delete: bool = False,
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
) -> Iterator:
    """The given records (``{"contacts": [id, ...]}``) into the incremental source's tables.

    Same source name, so the same dlt schema; no incremental, so the saved cursor stays put.
    Ids HubSpot returns neither live nor archived land in ``report.resource(table).not_found``.

    Args:
        ids: table -> record ids to read.
        host: as for ``hubspot_source``; so are the credentials, ``requests_per_10s``,
            ``hard_delete``, ``policy``, ``report`` and ``auth``.

    Yields:
        One merge resource per table given ids, declared exactly as ``hubspot_source``'s.
    """
    tables = by_id_tables("HubSpot", ids, OBJECTS)
    report = report or SyncReport("hubspot")
    base = host.rstrip("/")
    clients = http_clients(
        base, access_token, client_id, client_secret, refresh_token, requests_per_10s, 1, policy, report, auth
    )
    for table in tables:
        object_type, cursor, columns = OBJECTS[table]
        yield _resource(_object_by_id, table, hard_delete)(
            clients.list, base, object_type, cursor, columns, list(ids[table]), report, table
        )


def _resource(pages, table: str, hard_delete: bool):
    """One table's dlt resource: the incremental and the by-id reads must declare it identically."""
    _, cursor, columns = OBJECTS[table]
    hints = columns_hint({ID: "string", **columns, "archived": "bool"}, ID, cursor)
    hints[DELETED_AT] = {"data_type": "timestamp", "nullable": True}
    if hard_delete:
        hints["archived"]["hard_delete"] = True
    return dlt.resource(pages, name=table, primary_key=ID, write_disposition="merge", columns=hints)


def _object_pages(
    clients: Clients,
    base: str,
    object_type: str,
    cursor: str,
    columns: dict[str, str],
    report: SyncReport,
    table: str,
    future_tolerance_seconds: float,
    updated: dlt.sources.incremental,
) -> Iterator[pa.Table]:
    """Records of one object type changed since the saved cursor (minus the look-back), then archived ones.

    Args:
        clients: the portal's list and search clients.
        base: the API host without its trailing slash.
        object_type: the CRM object type (``contacts``).
        cursor: the last-modified property the search sorts and filters on.
        columns: the properties to read and their declared types.
        report: collects what the read saw.
        table: the resource's table name (``contacts``).
        future_tolerance_seconds: how far past the portal's clock a stamp may be.
        updated: dlt's incremental on ``cursor``; its start value is where the read begins.

    Yields:
        One Arrow table per non-empty page: live changes in cursor order, then archived records.
    """
    start: datetime = updated.start_value or EPOCH
    report.resource(table).start(start, updated.lag or 0.0, future_tolerance_seconds)
    for rows, deleted in changed_since(clients, base, object_type, cursor, list(columns), start):
        arrow = records_page(rows, deleted, cursor, columns, report, table)
        report.watch_future(table, arrow, cursor, ID)
        if arrow.num_rows:
            yield arrow
    cap_cursor(updated, report, table)
    report.finish(table)


def _object_by_id(
    client: CrmHttpClient,
    base: str,
    object_type: str,
    cursor: str,
    columns: dict[str, str],
    ids: list[str],
    report: SyncReport,
    table: str,
) -> Iterator[pa.Table]:
    """The given records, live or archived, through ``batch/read``; ids not returned go to ``not_found``.

    Args:
        client: the portal's list client.
        base: the API host without its trailing slash.
        object_type: the CRM object type (``contacts``).
        cursor: the last-modified property (an archived record's cursor is its archive time).
        columns: the properties to read and their declared types.
        ids: record ids (numeric; others are reported not found, never asked).
        report: collects what the read saw, and the ids not found.
        table: the resource's table name (``contacts``).

    Yields:
        One Arrow table per batch call that returned records.
    """
    resource = report.resource(table)
    resource.start(None)
    valid = [i for i in dict.fromkeys(ids) if i.isdigit()]
    resource.not_found.update(i for i in ids if not i.isdigit())  # HubSpot record ids are numeric
    for group in chunks(valid, BATCH_READ):
        missing = group
        for archived in (False, True):
            rows, missing = batch_read(client, base, object_type, cursor, list(columns), missing, archived)
            if rows:
                yield records_page(rows, archived, cursor, columns, report, table, with_stamps=False)
            if not missing:  # only ids HubSpot named as not found are asked again, archived
                break
        resource.not_found.update(missing)
    report.finish(table)
