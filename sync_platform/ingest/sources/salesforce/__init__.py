"""Salesforce source: Contact, Account and Case, incremental on ``SystemModstamp``.

Reads ``queryAll`` (so deleted rows arrive with ``IsDeleted = true``) with
``WHERE SystemModstamp >= :start ORDER BY SystemModstamp, Id``: ``>=`` plus the id tie-break
never loses rows sharing a stamp, and the start is stepped back by a look-back window so a
record committed late with an older stamp is re-read. Merge on ``Id`` makes re-reads harmless.

``salesforce_by_id_source`` reads given ids (``WHERE Id IN (...)`` through ``queryAll``, so a
deleted record still arrives, flagged) into the same tables with the same hints: targeted
repair and dead-letter replay, without touching the incremental cursor.
"""

# No `from __future__ import annotations` here: dlt finds the incremental parameter by its
# runtime annotation, and a string annotation silently turns every run into a full read.


import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

import dlt
import polars as pl
import pyarrow as pa

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
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy
from sync_platform.ingest.sources.salesforce.settings import (
    API_VERSION,
    CURSOR,
    IDS_PER_QUERY,
    OBJECTS,
    PAGE_SIZE,
)

_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")  # 15- or 18-character record ids


@dlt.source(name="salesforce", max_table_nesting=0)
def salesforce_source(
    instance_url: str = dlt.config.value,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    token_url: str | None = None,
    ca_file: str | None = None,
    look_back_seconds: float = 300.0,
    page_size: int = PAGE_SIZE,
    hard_delete: bool = False,
    objects: Sequence[str] = tuple(OBJECTS),
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
) -> Iterator:
    """Contacts, accounts and cases of one Salesforce org.

    Args:
        instance_url: e.g. ``https://acme.my.salesforce.com`` (or the sandbox's base URL).
        client_id: connected-app consumer key (``SOURCES__SALESFORCE__CLIENT_ID``).
        client_secret: connected-app secret (``SOURCES__SALESFORCE__CLIENT_SECRET``).
        look_back_seconds: how far before the saved cursor each run starts re-reading.
        hard_delete: delete rows removed at the source instead of stamping ``deleted_at``.
        policy: retries, throttling and the daily budget reserve.
    """
    require_known("Salesforce", objects, OBJECTS)
    report = report or SyncReport("salesforce")
    client = http_client(instance_url, client_id, client_secret, token_url, ca_file, policy, report, auth)
    base = instance_url.rstrip("/")
    for table in objects:
        sobject, columns = OBJECTS[table]
        yield _resource(_sobject_pages, table, hard_delete)(
            client, base, sobject, columns, page_size, report, table,
            dlt.sources.incremental(CURSOR, initial_value=EPOCH, lag=look_back_seconds, range_start="closed"))


@dlt.source(name="salesforce", max_table_nesting=0)
def salesforce_by_id_source(
    ids: Mapping[str, Sequence[str]],
    instance_url: str = dlt.config.value,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    token_url: str | None = None,
    ca_file: str | None = None,
    page_size: int = PAGE_SIZE,
    hard_delete: bool = False,
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
) -> Iterator:
    """The given records (``{"contacts": [id, ...]}``) into the incremental source's tables.

    Same source name, so the same dlt schema; no incremental, so the saved cursor stays put.
    Ids the org no longer returns (purged, never existed, malformed) land in
    ``report.resource(table).not_found``.
    """
    tables = by_id_tables("Salesforce", ids, OBJECTS)
    report = report or SyncReport("salesforce")
    client = http_client(instance_url, client_id, client_secret, token_url, ca_file, policy, report, auth)
    base = instance_url.rstrip("/")
    for table in tables:
        sobject, columns = OBJECTS[table]
        yield _resource(_sobject_by_id, table, hard_delete)(
            client, base, sobject, columns, list(ids[table]), page_size, report, table)


def http_client(instance_url: str, client_id: str, client_secret: str, token_url: str | None, ca_file: str | None,
                policy: HttpPolicy | None, report: SyncReport, auth: TokenProvider | None) -> CrmHttpClient:
    """The org's HTTP client (OAuth client credentials unless ``auth`` is given): ingestion, by-id
    reads and reconciliation listings share it."""
    verify: str | bool = ca_file or True
    auth = auth or OAuthToken("salesforce", token_url or f"{instance_url.rstrip('/')}/services/oauth2/token",
                              client_id, client_secret, verify=verify)
    return CrmHttpClient("salesforce", auth, policy or HttpPolicy(budget_reserve=1000), verify=verify,
                         stats=report.stats)


def _resource(pages, table: str, hard_delete: bool):
    """One table's dlt resource: the incremental and the by-id reads must declare it identically."""
    return dlt.resource(pages, name=table, primary_key="Id", write_disposition="merge",
                        columns=_hints(OBJECTS[table][1], hard_delete))


def _hints(columns: dict[str, str], hard_delete: bool) -> dict:
    hints = columns_hint(columns, "Id")
    hints[DELETED_AT] = {"data_type": "timestamp", "nullable": True}
    if hard_delete:
        hints["IsDeleted"]["hard_delete"] = True
    return hints


def _page(records: list[dict], columns: dict[str, str], report: SyncReport, table: str,
          with_stamps: bool = True) -> pa.Table:
    """A page as Arrow: ``IsDeleted`` rows get ``deleted_at`` (their last stamp, when the deletion happened)."""
    deleted_at = pl.when(pl.col("IsDeleted")).then(pl.col(CURSOR)).otherwise(None)
    arrow = to_arrow(records, columns, extra={DELETED_AT: deleted_at}, primary_key="Id",
                     rejects=report.resource(table).rejects)
    stamps = arrow.column(CURSOR).to_pylist()
    newest = max((r for r in stamps if r is not None), default=None)
    report.resource(table).saw(arrow.num_rows, sum(1 for r in records if r.get("IsDeleted")), newest,
                               stamps if with_stamps else None)
    return arrow


def _sobject_pages(client: CrmHttpClient, base: str, sobject: str, columns: dict[str, str], page_size: int,
                   report: SyncReport, table: str, updated: dlt.sources.incremental) -> Iterator[pa.Table]:
    start: datetime = updated.start_value or EPOCH
    report.resource(table).start(start, updated.lag or 0.0)
    soql = (f"SELECT {', '.join(columns)} FROM {sobject} WHERE {CURSOR} >= {_soql_datetime(start)} "
            f"ORDER BY {CURSOR}, Id")
    for records in _query_all(client, base, soql, page_size):
        arrow = _page(records, columns, report, table)
        if arrow.num_rows:
            yield arrow


def _sobject_by_id(client: CrmHttpClient, base: str, sobject: str, columns: dict[str, str], ids: list[str],
                   page_size: int, report: SyncReport, table: str) -> Iterator[pa.Table]:
    resource = report.resource(table)
    resource.start(None)
    valid = [i for i in dict.fromkeys(ids) if _ID.match(i)]
    resource.not_found.update(i for i in ids if not _ID.match(i))  # SOQL would refuse the whole query
    for group in chunks(valid, IDS_PER_QUERY):
        quoted = ", ".join(f"'{i}'" for i in group)
        soql = f"SELECT {', '.join(columns)} FROM {sobject} WHERE Id IN ({quoted})"
        seen: set[str] = set()
        for records in _query_all(client, base, soql, page_size):
            seen.update(_short(r.get("Id")) for r in records)
            arrow = _page(records, columns, report, table, with_stamps=False)
            if arrow.num_rows:
                yield arrow
        resource.not_found.update(i for i in group if _short(i) not in seen)


def _query_all(client: CrmHttpClient, base: str, soql: str, page_size: int) -> Iterator[list[dict]]:
    """Pages of records of one SOQL query through ``queryAll`` (deleted rows included)."""
    headers = {"Sforce-Query-Options": f"batchSize={page_size}"}
    page = client.get_json(f"{base}/services/data/v{API_VERSION}/queryAll/", params={"q": soql}, headers=headers)
    while True:
        yield page.get("records", [])
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return
        page = client.get_json(f"{base}{page['nextRecordsUrl']}", headers=headers)


def _short(record_id: object) -> str:
    """The case-sensitive 15-character form: Salesforce answers 18-character ids for either."""
    return str(record_id or "")[:15]


def _soql_datetime(value: datetime) -> str:
    """SOQL datetime literal in UTC with milliseconds (SOQL literals are unquoted)."""
    utc = value.astimezone(EPOCH.tzinfo)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
