"""HubSpot CRM v3 calls: the portal's clients, search windows past the 10,000 cap, list and batch reads.

Records are flattened (properties, ``id``, ``archived``) and parsed into Arrow pages here; the
resources in ``__init__`` only decide what to read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

import polars as pl
import pyarrow as pa

from sync_platform.core.errors import CrmRequestError, ErrorKind
from sync_platform.ingest.sources.arrow import to_arrow
from sync_platform.ingest.sources.auth import OAuthToken, StaticToken, TokenProvider
from sync_platform.ingest.sources.common import DELETED_AT, SyncReport, page_records
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy

from .settings import ID, LIST_PAGE, SEARCH_PAGE


@dataclass(frozen=True)
class Clients:
    list: CrmHttpClient
    search: CrmHttpClient


def http_clients(
    base: str,
    access_token: str | None,
    client_id: str | None,
    client_secret: str | None,
    refresh_token: str | None,
    requests_per_10s: int | None,
    search_per_second: int,
    policy: HttpPolicy | None,
    report: SyncReport,
    auth: TokenProvider | None,
) -> Clients:
    """The portal's list and search clients (private-app token or OAuth refresh unless ``auth`` is
    given): ingestion, by-id reads and reconciliation listings share them."""
    if auth is None:
        if client_id and client_secret and refresh_token:
            auth = OAuthToken(
                "hubspot", f"{base}/oauth/v1/token", client_id, client_secret, refresh_token=refresh_token
            )
        elif access_token:
            auth = StaticToken("hubspot", access_token)
        else:
            raise ValueError(
                "HubSpot needs access_token (private app) or client_id, client_secret and refresh_token"
            )
    policy = policy or HttpPolicy(max_requests=requests_per_10s, per_seconds=10.0)
    client = CrmHttpClient("hubspot", auth, policy, stats=report.stats)
    # search has its own, tighter limit: a second client with its own limiter, same counters
    search = CrmHttpClient(
        "hubspot",
        auth,
        replace(policy, max_requests=max(1, int(search_per_second)), per_seconds=1.0),
        stats=report.stats,
    )
    return Clients(client, search)


def records_page(
    rows: list[dict],
    deleted: bool,
    cursor: str,
    columns: dict[str, str],
    report: SyncReport,
    table: str,
    with_stamps: bool = True,
) -> pa.Table:
    """Flattened records as Arrow; archived ones get ``deleted_at`` = their archive time."""
    all_columns = {ID: "string", **columns, "archived": "bool", "archived_at": "datetime"}
    extra = (
        {DELETED_AT: pl.col("archived_at")}
        if deleted
        else {DELETED_AT: pl.lit(None, pl.Datetime("us", "UTC"))}
    )
    arrow = to_arrow(rows, all_columns, extra=extra, primary_key=ID, rejects=report.resource(table).rejects)
    arrow = arrow.drop_columns(["archived_at"])
    stamps = arrow.column(cursor).to_pylist()
    newest = max((v for v in stamps if v is not None), default=None)
    report.resource(table).saw(
        arrow.num_rows, arrow.num_rows if deleted else 0, newest, stamps if with_stamps else None
    )
    return arrow


def flatten(obj: dict, cursor: str) -> dict:
    """One API record as a row: its properties, ``id``, ``archived`` and ``archived_at``."""
    row = dict(obj.get("properties") or {})
    row[ID] = obj["id"]
    row["archived"] = bool(obj.get("archived"))
    row["archived_at"] = obj.get("archivedAt")
    if row["archived_at"] and (
        not row.get(cursor) or _ms_from_iso(row["archived_at"]) > _ms_from_iso(row[cursor])
    ):
        # archiving is the record's last change: the cursor must not filter the deletion out
        row[cursor] = row["archived_at"]
    return row


def changed_since(
    clients: Clients, base: str, object_type: str, cursor: str, properties: list[str], start: datetime
) -> Iterator[tuple[list[dict], bool]]:
    """Pages of (rows, are_deleted): live changes since ``start``, then archived records."""
    yield from (
        (rows, False) for rows in _search_since(clients.search, base, object_type, cursor, properties, start)
    )
    yield from (
        (rows, True) for rows in _archived_since(clients.list, base, object_type, cursor, properties, start)
    )


def _search_since(
    client: CrmHttpClient, base: str, object_type: str, cursor: str, properties: list[str], start: datetime
) -> Iterator[list[dict]]:
    """Every record whose ``cursor`` is at or after ``start``, paged by keyset, never by offset.

    Search pages by ``after``, an offset into results sorted by the cursor: a record edited during
    the sync moves to the end, every later record shifts up one place, and the record at the next
    page boundary is never read (nor by the next run, whose look-back starts after its stamp).
    So every page is a fresh query from the last stamp seen, repeats dropped by id; a page whose
    rows all share one stamp cannot move the keyset, and that stamp is read by id instead.
    """
    url = f"{base}/crm/v3/objects/{object_type}/search"
    lower, seen_at_lower = _ms(start), set()
    while True:
        body = {
            "filterGroups": [{"filters": [{"propertyName": cursor, "operator": "GTE", "value": str(lower)}]}],
            "sorts": [{"propertyName": cursor, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": SEARCH_PAGE,
        }
        rows = [flatten(r, cursor) for r in _results(client.request("POST", url, json=body).json(), url)]
        fresh = [r for r in rows if not (_stamp(r, cursor) == lower and r[ID] in seen_at_lower)]
        if fresh:
            yield fresh
        if len(rows) < SEARCH_PAGE:
            return  # the last page of the keyset
        last = _stamp(rows[-1], cursor)
        if last == lower:
            # a full page on one stamp: more records share it than a page holds, read them by id
            yield from _one_stamp_by_id(client, url, cursor, properties, last)
            lower, seen_at_lower = last + 1, set()
        else:
            lower, seen_at_lower = last, {r[ID] for r in rows if _stamp(r, cursor) == last}


def _results(page: dict, url: str) -> list[dict]:
    return page_records(page, "results", "hubspot", url, method="POST")


def _one_stamp_by_id(
    client: CrmHttpClient, url: str, cursor: str, properties: list[str], stamp: int
) -> Iterator[list[dict]]:
    last_id = "0"
    while True:
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": cursor, "operator": "EQ", "value": str(stamp)},
                        {"propertyName": "hs_object_id", "operator": "GT", "value": last_id},
                    ]
                }
            ],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": properties,
            "limit": SEARCH_PAGE,
        }
        rows = [flatten(r, cursor) for r in _results(client.request("POST", url, json=body).json(), url)]
        if not rows:
            return
        yield rows
        last_id = rows[-1][ID]
        if len(rows) < SEARCH_PAGE:
            return


def _archived_since(
    client: CrmHttpClient, base: str, object_type: str, cursor: str, properties: list[str], start: datetime
) -> Iterator[list[dict]]:
    """Records archived (deleted) at or after ``start``: the list API cannot filter, so filter here."""
    params: dict = {"archived": "true", "limit": LIST_PAGE, "properties": ",".join(properties)}
    lower = _ms(start)
    for results in list_pages(client, base, object_type, params):
        rows = [flatten(r, cursor) for r in results]
        recent = [r for r in rows if r["archived_at"] and _ms_from_iso(r["archived_at"]) >= lower]
        if recent:
            yield recent


def list_pages(client: CrmHttpClient, base: str, object_type: str, params: dict) -> Iterator[list[dict]]:
    """Pages of raw records of the list endpoint (``GET /crm/v3/objects/<type>``), along ``paging.next``."""
    url = f"{base}/crm/v3/objects/{object_type}"
    while True:
        page = client.get_json(url, params=params)
        yield page_records(page, "results", "hubspot", url)
        nxt = (page.get("paging") or {}).get("next")
        if not nxt:
            return
        params = {**params, "after": nxt["after"]}


def batch_read(
    client: CrmHttpClient,
    base: str,
    object_type: str,
    cursor: str,
    properties: list[str],
    ids: list[str],
    archived: bool,
) -> tuple[list[dict], list[str]]:
    """One ``batch/read`` call: the flattened records of ``ids`` (live, or archived) and the ids
    HubSpot says do not exist.

    A 207 names per-id failures in ``errors``; only ``OBJECT_NOT_FOUND`` means the record is gone.
    Any other failure, or an id neither returned nor named, raises: taking it for "not found"
    would let remediation soft-delete a live record.
    """
    url = f"{base}/crm/v3/objects/{object_type}/batch/read"
    body = {"inputs": [{"id": i} for i in ids], "properties": properties}
    page = client.request("POST", url, json=body, params={"archived": "true"} if archived else None).json()
    rows = [flatten(r, cursor) for r in _results(page, url)]
    not_found: list[str] = []
    for error in page.get("errors") or []:
        named = [str(i) for i in (error.get("context") or {}).get("ids", [])]
        if error.get("category") != "OBJECT_NOT_FOUND":
            raise CrmRequestError(
                "hubspot",
                ErrorKind.CLIENT_ERROR,
                f"batch/read refused {len(named)} id(s): {error.get('category')}",
                method="POST",
                path=url,
                status=207,
            )
        not_found += named
    unanswered = set(ids) - {r[ID] for r in rows} - set(not_found)
    if unanswered:
        raise CrmRequestError(
            "hubspot",
            ErrorKind.PARSE,
            f"batch/read answered neither a record nor not-found for {len(unanswered)} id(s)",
            method="POST",
            path=url,
        )
    return rows, not_found


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _ms_from_iso(value: str) -> int:
    return _ms(datetime.fromisoformat(value.replace("Z", "+00:00")))


def _stamp(row: dict, cursor: str) -> int:
    return _ms_from_iso(row[cursor])
