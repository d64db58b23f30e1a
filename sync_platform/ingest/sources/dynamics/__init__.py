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

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import dlt
import polars as pl
import pyarrow as pa

from sync_platform.core.errors import CrmRequestError, ErrorKind
from sync_platform.ingest.sources.arrow import columns_hint, to_arrow
from sync_platform.ingest.sources.auth import OAuthToken, TokenProvider
from sync_platform.ingest.sources.common import (
    DELETED_AT,
    EPOCH,
    SyncReport,
    by_id_tables,
    chunks,
    require_known,
)
from sync_platform.ingest.sources.dynamics.settings import (
    CURSOR,
    IDS_PER_QUERY,
    NOT_TRACKED,
    OBJECTS,
    PAGE_SIZE,
)
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy

log = logging.getLogger(__name__)
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


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
) -> Iterator:
    """Contacts, accounts and incidents of one Dataverse environment.

    Args:
        api_url: ``https://<org>.crm.dynamics.com/api/data/v9.2`` (or the sandbox's).
        token_url: ``https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token``.
        scope: ``https://<org>.crm.dynamics.com/.default``.
        change_tracking: ``auto`` (tracked, falling back to ``modifiedon`` for an untracked
            table), ``on`` (an untracked table fails the run) or ``off`` (always ``modifiedon``).
        look_back_seconds: ``modifiedon`` reads start this far before the saved cursor.
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
            client, api_url.rstrip("/"), entity_set, pk, columns, page_size, hard_delete, report, table,
            change_tracking, look_back_seconds)


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
    """
    tables = by_id_tables("Dynamics", ids, OBJECTS)
    report = report or SyncReport("dynamics")
    client = http_client(token_url, client_id, client_secret, scope, policy, report, auth)
    for table in tables:
        entity_set, pk, columns = OBJECTS[table]
        yield _resource(_entity_by_id, table, hard_delete)(
            client, api_url.rstrip("/"), entity_set, pk, columns, list(ids[table]), page_size, hard_delete,
            report, table)


def http_client(token_url: str, client_id: str, client_secret: str, scope: str | None, policy: HttpPolicy | None,
                report: SyncReport, auth: TokenProvider | None) -> CrmHttpClient:
    """The environment's HTTP client (OAuth client credentials unless ``auth`` is given): ingestion,
    by-id reads and reconciliation listings share it."""
    auth = auth or OAuthToken("dynamics", token_url, client_id, client_secret, scope=scope)
    return CrmHttpClient("dynamics", auth, policy or HttpPolicy(max_requests=5_900, per_seconds=300.0),
                         stats=report.stats)


def _resource(pages, table: str, hard_delete: bool):
    """One table's dlt resource: the tracked and the by-id reads must declare it identically."""
    _, pk, columns = OBJECTS[table]
    hints = columns_hint(columns, pk)
    hints[DELETED_AT] = {"data_type": "timestamp", "nullable": True}
    if hard_delete:
        hints["_deleted"] = {"data_type": "bool", "nullable": True, "hard_delete": True}
    return dlt.resource(pages, name=table, primary_key=pk, write_disposition="merge", columns=hints)


def _entity_by_id(client: CrmHttpClient, api_url: str, entity_set: str, pk: str, columns: dict[str, str],
                  ids: list[str], page_size: int, hard_delete: bool, report: SyncReport,
                  table: str) -> Iterator[pa.Table]:
    resource = report.resource(table)
    resource.start(None)
    wanted = {_guid(i): i for i in dict.fromkeys(ids) if _guid(i)}
    resource.not_found.update(i for i in ids if not _guid(i))
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    for group in chunks(list(wanted), IDS_PER_QUERY):
        values = ",".join(f"'{g}'" for g in group)
        params = {"$select": ",".join(columns),
                  "$filter": f"Microsoft.Dynamics.CRM.In(PropertyName='{pk}',PropertyValues=[{values}])"}
        page = client.get_json(f"{api_url}/{entity_set}", params=params, headers=headers)
        seen: set[str] = set()
        while True:
            rows = page.get("value", [])
            seen.update(_guid(str(row.get(pk) or "")) for row in rows)
            yield from _emit(rows, [], pk, columns, hard_delete, report, table)
            next_link = page.get("@odata.nextLink")
            if not next_link:
                break
            page = client.get_json(next_link, headers=headers)
        resource.not_found.update(wanted[g] for g in group if g not in seen)


def _guid(value: str) -> str:
    """The canonical lower-case form of a GUID, or '' if it is not one (it would break the filter)."""
    text = value.strip().strip("{}").lower()
    return text if _GUID.match(text) else ""


def _entity_pages(client: CrmHttpClient, api_url: str, entity_set: str, pk: str, columns: dict[str, str],
                  page_size: int, hard_delete: bool, report: SyncReport, table: str, change_tracking: str = "on",
                  look_back_seconds: float = 300.0) -> Iterator[pa.Table]:
    state = dlt.current.resource_state()
    by_modifiedon = (pk, columns, page_size, hard_delete, report, table, state, look_back_seconds)
    if change_tracking == "off" or (change_tracking == "auto" and state.get("tracking") == "off"):
        yield from _modified_since(client, f"{api_url}/{entity_set}", *by_modifiedon)
        return
    report.resource(table).start(None)
    report.resource(table).read_mode = "change_tracking"
    headers = {"Prefer": f"odata.track-changes,odata.maxpagesize={page_size}"}
    select = ",".join(columns)
    token = state.get("delta_token")
    url, params = f"{api_url}/{entity_set}", {"$select": select}
    if token:
        params["$deltatoken"] = token
    try:
        page = client.get_json(url, params=params, headers=headers)
    except CrmRequestError as exc:
        if _not_tracked(exc) and change_tracking == "auto":
            log.warning("dynamics %s: the table is not enabled for change tracking; reading modifiedon from now on",
                        table)
            state["tracking"] = "off"
            state.pop("delta_token", None)
            yield from _modified_since(client, url, *by_modifiedon)
            return
        if not token or exc.kind != ErrorKind.CLIENT_ERROR or _not_tracked(exc):
            raise
        log.warning("dynamics %s: delta token refused (%s); re-reading everything", table, exc.detail)
        page = client.get_json(url, params={"$select": select}, headers=headers)
    while True:
        live = [row for row in page.get("value", []) if "$deletedEntity" not in row.get("@odata.context", "")
                and row.get("reason") != "deleted"]
        gone = [row for row in page.get("value", []) if row not in live]
        yield from _emit(live, gone, pk, columns, hard_delete, report, table)
        next_link = page.get("@odata.nextLink")
        if not next_link:
            break
        page = client.get_json(next_link, headers=headers)
    delta_link = page.get("@odata.deltaLink")
    if delta_link:
        state["delta_token"] = parse_qs(urlsplit(delta_link).query)["$deltatoken"][0]


def _not_tracked(exc: CrmRequestError) -> bool:
    """Dataverse's ChangeTrackingNotEnabledForEntity (0x80072491)."""
    return exc.kind == ErrorKind.CLIENT_ERROR and (NOT_TRACKED in exc.detail
                                                   or "enabled for change tracking" in exc.detail)


def _modified_since(client: CrmHttpClient, url: str, pk: str, columns: dict[str, str], page_size: int,
                    hard_delete: bool, report: SyncReport, table: str, state: dict,
                    look_back_seconds: float) -> Iterator[pa.Table]:
    """Rows with ``modifiedon`` at or after the saved cursor minus the look-back, by (modifiedon, id).

    ``ge`` plus the id tie-break never loses rows sharing a (whole-second) stamp; the cursor is
    saved in the resource state, which dlt commits with the load, so it only moves once the data
    landed. Deletions do not show up here at all.
    """
    resource = report.resource(table)
    resource.read_mode, resource.deletes_visible = "modifiedon", False
    log.warning("dynamics %s: change tracking is off; deletions are not seen until reconciliation finds them "
                "(class 'extra')", table)
    saved = state.get("modifiedon_cursor")
    cursor = datetime.fromisoformat(saved) if saved else EPOCH
    start = max(cursor - timedelta(seconds=look_back_seconds), EPOCH) if saved else EPOCH
    resource.start(start, look_back_seconds)
    params = {"$select": ",".join(columns), "$filter": f"{CURSOR} ge {start.strftime('%Y-%m-%dT%H:%M:%SZ')}",
              "$orderby": f"{CURSOR} asc,{pk} asc"}
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    page = client.get_json(url, params=params, headers=headers)
    while True:
        yield from _emit(page.get("value", []), [], pk, columns, hard_delete, report, table, count_rereads=True)
        next_link = page.get("@odata.nextLink")
        if not next_link:
            break
        page = client.get_json(next_link, headers=headers)
    if resource.newest_change is not None and resource.newest_change > cursor:
        state["modifiedon_cursor"] = resource.newest_change.isoformat()


def _emit(live: list[dict], gone: list[dict], pk: str, columns: dict[str, str], hard_delete: bool,
          report: SyncReport, table: str, count_rereads: bool = False) -> Iterator[pa.Table]:
    null_ts = pl.lit(None, pl.Datetime("us", "UTC"))
    extra_live = {DELETED_AT: null_ts, **({"_deleted": pl.lit(False)} if hard_delete else {})}
    if live:
        arrow = to_arrow(live, columns, extra=extra_live, primary_key=pk, rejects=report.resource(table).rejects)
        stamps = arrow.column(CURSOR).to_pylist()
        newest = max((v for v in stamps if v is not None), default=None)
        report.resource(table).saw(arrow.num_rows, 0, newest, stamps if count_rereads else None)
        if arrow.num_rows:
            yield arrow
    if gone:
        # Dataverse tells only the id of a deleted row: a tombstone stamped with the time we learnt it
        now = pl.lit(datetime.now(UTC), pl.Datetime("us", "UTC"))
        tombstones = [{pk: row["id"], CURSOR: None} for row in gone]
        arrow = to_arrow(tombstones, columns, primary_key=pk, rejects=report.resource(table).rejects,
                         extra={DELETED_AT: now, CURSOR: now, **({"_deleted": pl.lit(True)} if hard_delete else {})})
        report.resource(table).saw(arrow.num_rows, arrow.num_rows, None)
        yield arrow
