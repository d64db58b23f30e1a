"""Dynamics 365 (Dataverse) source: contacts, accounts and incidents through change tracking.

The first run reads every row with ``Prefer: odata.track-changes`` and keeps the delta token
from ``@odata.deltaLink`` in dlt's resource state (stored in the destination with the load, so
it only advances when the data landed). Later runs call the delta link: changed rows, plus
``$deletedEntity`` rows for deletions. Change tracking sees every change, including edits that
did not move ``modifiedon``. An expired token falls back to a full re-read (merge keeps it
idempotent; deletions in the gap are left to reconciliation).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import dlt
import polars as pl
import pyarrow as pa

from ..arrow import columns_hint, to_arrow
from ..auth import OAuthToken, TokenProvider
from ..common import DELETED_AT, SyncReport, require_known
from ..errors import CrmRequestError, ErrorKind
from ..http import CrmHttpClient, HttpPolicy
from .settings import CURSOR, OBJECTS, PAGE_SIZE

log = logging.getLogger(__name__)


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
) -> Iterator:
    """Contacts, accounts and incidents of one Dataverse environment.

    Args:
        api_url: ``https://<org>.crm.dynamics.com/api/data/v9.2`` (or the sandbox's).
        token_url: ``https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token``.
        scope: ``https://<org>.crm.dynamics.com/.default``.
    """
    require_known("Dynamics", objects, OBJECTS)
    if not 1 <= page_size <= PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {PAGE_SIZE}, got {page_size}")
    report = report or SyncReport("dynamics")
    auth = auth or OAuthToken("dynamics", token_url, client_id, client_secret, scope=scope)
    client = CrmHttpClient("dynamics", auth, policy or HttpPolicy(max_requests=5_900, per_seconds=300.0),
                           stats=report.stats)
    for table in objects:
        entity_set, pk, columns = OBJECTS[table]
        hints = columns_hint(columns, pk)
        hints[DELETED_AT] = {"data_type": "timestamp", "nullable": True}
        if hard_delete:
            hints["_deleted"] = {"data_type": "bool", "nullable": True, "hard_delete": True}
        yield dlt.resource(_entity_pages, name=table, primary_key=pk, write_disposition="merge", columns=hints)(
            client, api_url.rstrip("/"), entity_set, pk, columns, page_size, hard_delete, report, table)


def _entity_pages(client: CrmHttpClient, api_url: str, entity_set: str, pk: str, columns: dict[str, str],
                  page_size: int, hard_delete: bool, report: SyncReport, table: str) -> Iterator[pa.Table]:
    state = dlt.current.resource_state()
    report.resource(table).start(None)
    headers = {"Prefer": f"odata.track-changes,odata.maxpagesize={page_size}"}
    select = ",".join(columns)
    token = state.get("delta_token")
    url, params = f"{api_url}/{entity_set}", {"$select": select}
    if token:
        params["$deltatoken"] = token
    try:
        page = client.get_json(url, params=params, headers=headers)
    except CrmRequestError as exc:
        if not token or exc.kind != ErrorKind.CLIENT_ERROR:
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


def _emit(live: list[dict], gone: list[dict], pk: str, columns: dict[str, str], hard_delete: bool,
          report: SyncReport, table: str) -> Iterator[pa.Table]:
    null_ts = pl.lit(None, pl.Datetime("us", "UTC"))
    extra_live = {DELETED_AT: null_ts, **({"_deleted": pl.lit(False)} if hard_delete else {})}
    if live:
        arrow = to_arrow(live, columns, extra=extra_live, primary_key=pk)
        newest = max((v for v in arrow.column(CURSOR).to_pylist() if v is not None), default=None)
        report.resource(table).saw(arrow.num_rows, 0, newest)
        yield arrow
    if gone:
        # Dataverse tells only the id of a deleted row: a tombstone stamped with the time we learnt it
        now = pl.lit(datetime.now(UTC), pl.Datetime("us", "UTC"))
        tombstones = [{pk: row["id"], CURSOR: None} for row in gone]
        arrow = to_arrow(tombstones, columns, primary_key=pk,
                         extra={DELETED_AT: now, CURSOR: now, **({"_deleted": pl.lit(True)} if hard_delete else {})})
        report.resource(table).saw(arrow.num_rows, arrow.num_rows, None)
        yield arrow
