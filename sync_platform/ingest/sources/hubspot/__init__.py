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
from dataclasses import dataclass, replace
from datetime import datetime

import dlt
import polars as pl
import pyarrow as pa

from sync_platform.ingest.sources.arrow import columns_hint, to_arrow
from sync_platform.ingest.sources.auth import OAuthToken, StaticToken, TokenProvider
from sync_platform.ingest.sources.common import (
    DELETED_AT,
    EPOCH,
    SyncReport,
    by_id_tables,
    chunks,
    require_known,
)
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy
from sync_platform.ingest.sources.hubspot.settings import (
    BATCH_READ,
    LIST_PAGE,
    OBJECTS,
    SEARCH_CAP,
    SEARCH_PAGE,
)

ID = "id"


@dataclass(frozen=True)
class Clients:
    list: CrmHttpClient
    search: CrmHttpClient


@dlt.source(name="hubspot", max_table_nesting=0)
def hubspot_source(
    host: str = "https://api.hubapi.com",
    access_token: str | None = dlt.secrets.value,
    client_id: str | None = None,
    client_secret: str | None = None,
    refresh_token: str | None = None,
    look_back_seconds: float = 300.0,
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
        access_token: private-app token (``SOURCES__HUBSPOT__ACCESS_TOKEN``); or give
            ``client_id``/``client_secret``/``refresh_token`` for OAuth.
        requests_per_10s: client-side ceiling, set just under the portal's limit (100 on
            Free/Starter, 190 on Pro/Enterprise).
        search_per_second: the search API's ceiling (HubSpot allows about 5/s), paced with headroom.
    """
    require_known("HubSpot", objects, OBJECTS)
    report = report or SyncReport("hubspot")
    base = host.rstrip("/")
    clients = http_clients(base, access_token, client_id, client_secret, refresh_token, requests_per_10s,
                       search_per_second, policy, report, auth)
    for table in objects:
        object_type, cursor, columns = OBJECTS[table]
        yield _resource(_object_pages, table, hard_delete)(
            clients, base, object_type, cursor, columns, report, table,
            dlt.sources.incremental(cursor, initial_value=EPOCH, lag=look_back_seconds, range_start="closed"))


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
    """
    tables = by_id_tables("HubSpot", ids, OBJECTS)
    report = report or SyncReport("hubspot")
    base = host.rstrip("/")
    clients = http_clients(base, access_token, client_id, client_secret, refresh_token, requests_per_10s, 1,
                       policy, report, auth)
    for table in tables:
        object_type, cursor, columns = OBJECTS[table]
        yield _resource(_object_by_id, table, hard_delete)(
            clients.list, base, object_type, cursor, columns, list(ids[table]), report, table)


def http_clients(base: str, access_token: str | None, client_id: str | None, client_secret: str | None,
             refresh_token: str | None, requests_per_10s: int | None, search_per_second: int,
                 policy: HttpPolicy | None, report: SyncReport, auth: TokenProvider | None) -> Clients:
    """The portal's list and search clients (private-app token or OAuth refresh unless ``auth`` is
    given): ingestion, by-id reads and reconciliation listings share them."""
    if auth is None:
        if client_id and client_secret and refresh_token:
            auth = OAuthToken("hubspot", f"{base}/oauth/v1/token", client_id, client_secret,
                              refresh_token=refresh_token)
        elif access_token:
            auth = StaticToken("hubspot", access_token)
        else:
            raise ValueError("HubSpot needs access_token (private app) or client_id, client_secret and refresh_token")
    policy = policy or HttpPolicy(max_requests=requests_per_10s, per_seconds=10.0)
    client = CrmHttpClient("hubspot", auth, policy, stats=report.stats)
    # search has its own, tighter limit: a second client with its own limiter, same counters
    search = CrmHttpClient("hubspot", auth, replace(policy, max_requests=max(1, int(search_per_second)),
                                                    per_seconds=1.0), stats=report.stats)
    return Clients(client, search)


def _resource(pages, table: str, hard_delete: bool):
    """One table's dlt resource: the incremental and the by-id reads must declare it identically."""
    _, _, columns = OBJECTS[table]
    hints = columns_hint({ID: "string", **columns, "archived": "bool"}, ID)
    hints[DELETED_AT] = {"data_type": "timestamp", "nullable": True}
    if hard_delete:
        hints["archived"]["hard_delete"] = True
    return dlt.resource(pages, name=table, primary_key=ID, write_disposition="merge", columns=hints)


def _page(rows: list[dict], deleted: bool, cursor: str, columns: dict[str, str], report: SyncReport, table: str,
          with_stamps: bool = True) -> pa.Table:
    """Flattened records as Arrow; archived ones get ``deleted_at`` = their archive time."""
    all_columns = {ID: "string", **columns, "archived": "bool", "archived_at": "datetime"}
    extra = {DELETED_AT: pl.col("archived_at")} if deleted else {DELETED_AT: pl.lit(None, pl.Datetime("us", "UTC"))}
    arrow = to_arrow(rows, all_columns, extra=extra, primary_key=ID, rejects=report.resource(table).rejects)
    arrow = arrow.drop_columns(["archived_at"])
    stamps = arrow.column(cursor).to_pylist()
    newest = max((v for v in stamps if v is not None), default=None)
    report.resource(table).saw(arrow.num_rows, arrow.num_rows if deleted else 0, newest,
                               stamps if with_stamps else None)
    return arrow


def _flatten(obj: dict, cursor: str) -> dict:
    row = dict(obj.get("properties") or {})
    row[ID] = obj["id"]
    row["archived"] = bool(obj.get("archived"))
    row["archived_at"] = obj.get("archivedAt")
    if row["archived_at"] and (not row.get(cursor) or _ms_from_iso(row["archived_at"]) > _ms_from_iso(row[cursor])):
        # archiving is the record's last change: the cursor must not filter the deletion out
        row[cursor] = row["archived_at"]
    return row


def _object_pages(clients: Clients, base: str, object_type: str, cursor: str, columns: dict[str, str],
                  report: SyncReport, table: str, updated: dlt.sources.incremental) -> Iterator[pa.Table]:
    start: datetime = updated.start_value or EPOCH
    report.resource(table).start(start, updated.lag or 0.0)
    for rows, deleted in _changed(clients, base, object_type, cursor, list(columns), start):
        arrow = _page(rows, deleted, cursor, columns, report, table)
        if arrow.num_rows:
            yield arrow


def _object_by_id(client: CrmHttpClient, base: str, object_type: str, cursor: str, columns: dict[str, str],
                  ids: list[str], report: SyncReport, table: str) -> Iterator[pa.Table]:
    resource = report.resource(table)
    resource.start(None)
    url = f"{base}/crm/v3/objects/{object_type}/batch/read"
    valid = [i for i in dict.fromkeys(ids) if i.isdigit()]
    resource.not_found.update(i for i in ids if not i.isdigit())  # HubSpot record ids are numeric
    for group in chunks(valid, BATCH_READ):
        missing = group
        for archived in (False, True):
            body = {"inputs": [{"id": i} for i in missing], "properties": list(columns)}
            page = client.request("POST", url, json=body, params={"archived": "true"} if archived else None).json()
            rows = [_flatten(r, cursor) for r in page.get("results", [])]
            if rows:
                yield _page(rows, archived, cursor, columns, report, table, with_stamps=False)
            found = {row[ID] for row in rows}
            missing = [i for i in missing if i not in found]  # a 207 names these in "errors"
            if not missing:
                break
        resource.not_found.update(missing)


def _changed(clients: Clients, base: str, object_type: str, cursor: str, properties: list[str],
             start: datetime) -> Iterator[tuple[list[dict], bool]]:
    """Pages of (rows, are_deleted): live changes since ``start``, then archived records."""
    yield from ((rows, False) for rows in _search_since(clients.search, base, object_type, cursor, properties, start))
    yield from ((rows, True) for rows in _archived_since(clients.list, base, object_type, cursor, properties, start))


def _search_since(client: CrmHttpClient, base: str, object_type: str, cursor: str, properties: list[str],
                  start: datetime) -> Iterator[list[dict]]:
    url = f"{base}/crm/v3/objects/{object_type}/search"
    lower = _ms(start)
    while True:
        body = {"filterGroups": [{"filters": [{"propertyName": cursor, "operator": "GTE", "value": str(lower)}]}],
                "sorts": [{"propertyName": cursor, "direction": "ASCENDING"}],
                "properties": properties, "limit": SEARCH_PAGE}
        after, last_stamp, first_stamp = 0, None, None
        while True:
            page = client.request("POST", url, json={**body, "after": str(after)} if after else body).json()
            rows = [_flatten(r, cursor) for r in page.get("results", [])]
            if rows:
                yield rows
                first_stamp = first_stamp if first_stamp is not None else _stamp(rows[0], cursor)
                last_stamp = _stamp(rows[-1], cursor)
            nxt = (page.get("paging") or {}).get("next")
            if not nxt:
                return
            after = int(nxt["after"])
            if after + SEARCH_PAGE > SEARCH_CAP:
                break  # the next page would hit the cap: restart the window at the last stamp seen
        if last_stamp is None:
            return
        if last_stamp == first_stamp or _rows_at(client, url, cursor, last_stamp) > SEARCH_CAP - SEARCH_PAGE:
            # more rows share this stamp than one window can page: read that stamp by id, move past it
            yield from _one_stamp_by_id(client, url, cursor, properties, last_stamp)
            lower = last_stamp + 1
        else:
            lower = last_stamp  # restart at the stamp the cap cut through (merge dedups its re-read)


def _rows_at(client: CrmHttpClient, url: str, cursor: str, stamp: int) -> int:
    """How many records carry exactly this stamp (one cheap probe: ``limit`` 1, read ``total``)."""
    body = {"filterGroups": [{"filters": [{"propertyName": cursor, "operator": "EQ", "value": str(stamp)}]}],
            "properties": ["hs_object_id"], "limit": 1}
    return int(client.request("POST", url, json=body).json().get("total", 0))


def _one_stamp_by_id(client: CrmHttpClient, url: str, cursor: str, properties: list[str], stamp: int
                     ) -> Iterator[list[dict]]:
    last_id = "0"
    while True:
        body = {"filterGroups": [{"filters": [
            {"propertyName": cursor, "operator": "EQ", "value": str(stamp)},
            {"propertyName": "hs_object_id", "operator": "GT", "value": last_id}]}],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": properties, "limit": SEARCH_PAGE}
        page = client.request("POST", url, json=body).json()
        rows = [_flatten(r, cursor) for r in page.get("results", [])]
        if not rows:
            return
        yield rows
        last_id = rows[-1][ID]
        if len(rows) < SEARCH_PAGE:
            return


def _archived_since(client: CrmHttpClient, base: str, object_type: str, cursor: str, properties: list[str],
                    start: datetime) -> Iterator[list[dict]]:
    """Archived (deleted) records archived at or after ``start``: the list API cannot filter, so filter here."""
    url = f"{base}/crm/v3/objects/{object_type}"
    params: dict = {"archived": "true", "limit": LIST_PAGE, "properties": ",".join(properties)}
    lower = _ms(start)
    while True:
        page = client.get_json(url, params=params)
        rows = [_flatten(r, cursor) for r in page.get("results", [])]
        recent = [r for r in rows if r["archived_at"] and _ms_from_iso(r["archived_at"]) >= lower]
        if recent:
            yield recent
        nxt = (page.get("paging") or {}).get("next")
        if not nxt:
            return
        params = {**params, "after": nxt["after"]}


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _ms_from_iso(value: str) -> int:
    return _ms(datetime.fromisoformat(value.replace("Z", "+00:00")))


def _stamp(row: dict, cursor: str) -> int:
    return _ms_from_iso(row[cursor])
