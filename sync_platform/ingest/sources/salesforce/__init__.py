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

from .helpers import (
    by_id_soql,
    http_client,
    incremental_soql,
    is_record_id,
    query_pages,
    records_page,
    short_id,
)
from .settings import CURSOR, IDS_PER_QUERY, OBJECTS, PAGE_SIZE


@dlt.source(name="salesforce", max_table_nesting=0)
def salesforce_source(
    instance_url: str = dlt.config.value,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    token_url: str | None = None,
    ca_file: str | None = None,
    look_back_seconds: float = 300.0,
    future_tolerance_seconds: float = 300.0,
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
        token_url: the OAuth token endpoint, when not ``<instance_url>/services/oauth2/token``.
        ca_file: a CA bundle to verify the org's (or the sandbox's) TLS certificate with.
        look_back_seconds: how far before the saved cursor each run starts re-reading.
        future_tolerance_seconds: how far past the org's clock a ``SystemModstamp`` may be (at
            most ``look_back_seconds``); a later one is reported and kept out of the cursor.
        page_size: records per ``queryAll`` page (2,000 at most).
        hard_delete: delete rows removed at the source instead of stamping ``deleted_at``.
        objects: the tables to read, of ``settings.OBJECTS``.
        policy: retries, throttling and the daily budget reserve.
        report: collects what each resource saw (a new one when not given).
        auth: a token provider replacing the client-credentials flow.

    Yields:
        One merge resource per table, primary key ``Id``, incremental on ``SystemModstamp``.
    """
    require_known("Salesforce", objects, OBJECTS)
    report = report or SyncReport("salesforce")
    client = http_client(instance_url, client_id, client_secret, token_url, ca_file, policy, report, auth)
    base = instance_url.rstrip("/")
    for table in objects:
        sobject, columns = OBJECTS[table]
        yield _resource(_sobject_pages, table, hard_delete)(
            client,
            base,
            sobject,
            columns,
            page_size,
            report,
            table,
            future_tolerance_seconds,
            dlt.sources.incremental(CURSOR, initial_value=EPOCH, lag=look_back_seconds, range_start="closed"),
        )


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

    Args:
        ids: table -> record ids to read.
        instance_url: as for ``salesforce_source``; so are the credentials, ``page_size``,
            ``hard_delete``, ``policy``, ``report`` and ``auth``.

    Yields:
        One merge resource per table given ids, declared exactly as ``salesforce_source``'s.
    """
    tables = by_id_tables("Salesforce", ids, OBJECTS)
    report = report or SyncReport("salesforce")
    client = http_client(instance_url, client_id, client_secret, token_url, ca_file, policy, report, auth)
    base = instance_url.rstrip("/")
    for table in tables:
        sobject, columns = OBJECTS[table]
        yield _resource(_sobject_by_id, table, hard_delete)(
            client, base, sobject, columns, list(ids[table]), page_size, report, table
        )


def _resource(pages, table: str, hard_delete: bool):
    """One table's dlt resource: the incremental and the by-id reads must declare it identically."""
    return dlt.resource(
        pages,
        name=table,
        primary_key="Id",
        write_disposition="merge",
        columns=_hints(OBJECTS[table][1], hard_delete),
    )


def _hints(columns: dict[str, str], hard_delete: bool) -> dict:
    hints = columns_hint(columns, "Id", CURSOR)
    hints[DELETED_AT] = {"data_type": "timestamp", "nullable": True}
    if hard_delete:
        hints["IsDeleted"]["hard_delete"] = True
    return hints


def _sobject_pages(
    client: CrmHttpClient,
    base: str,
    sobject: str,
    columns: dict[str, str],
    page_size: int,
    report: SyncReport,
    table: str,
    future_tolerance_seconds: float,
    updated: dlt.sources.incremental,
) -> Iterator[pa.Table]:
    """Rows of one sObject changed since the saved cursor (minus the look-back), deleted ones included.

    Args:
        client: the org's HTTP client.
        base: the instance URL without its trailing slash.
        sobject: the sObject to read (``Contact``).
        columns: the fields to select and their declared types.
        page_size: records per ``queryAll`` page.
        report: collects what the read saw.
        table: the resource's table name (``contacts``).
        future_tolerance_seconds: how far past the org's clock a stamp may be.
        updated: dlt's incremental on ``SystemModstamp``; its start value is where the read begins.

    Yields:
        One Arrow table per non-empty page, in (``SystemModstamp``, ``Id``) order.
    """
    start: datetime = updated.start_value or EPOCH
    report.resource(table).start(start, updated.lag or 0.0, future_tolerance_seconds)
    soql = incremental_soql(sobject, columns, start)
    for records in query_pages(client, base, soql, page_size):
        arrow = records_page(records, columns, report, table)
        report.watch_future(table, arrow, CURSOR, "Id")
        if arrow.num_rows:
            yield arrow
    cap_cursor(updated, report, table)
    report.finish(table)


def _sobject_by_id(
    client: CrmHttpClient,
    base: str,
    sobject: str,
    columns: dict[str, str],
    ids: list[str],
    page_size: int,
    report: SyncReport,
    table: str,
) -> Iterator[pa.Table]:
    """The given records of one sObject, deleted ones included; ids not returned go to ``not_found``.

    Args:
        client: the org's HTTP client.
        base: the instance URL without its trailing slash.
        sobject: the sObject to read (``Contact``).
        columns: the fields to select and their declared types.
        ids: record ids (15 or 18 characters; malformed ones are reported not found, never queried).
        page_size: records per ``queryAll`` page.
        report: collects what the read saw, and the ids not found.
        table: the resource's table name (``contacts``).

    Yields:
        One Arrow table per non-empty page.
    """
    resource = report.resource(table)
    resource.start(None)
    valid = [i for i in dict.fromkeys(ids) if is_record_id(i)]
    resource.not_found.update(i for i in ids if not is_record_id(i))  # SOQL would refuse the whole query
    for group in chunks(valid, IDS_PER_QUERY):
        soql = by_id_soql(sobject, columns, group)
        seen: set[str] = set()
        for records in query_pages(client, base, soql, page_size):
            seen.update(short_id(r.get("Id")) for r in records)
            arrow = records_page(records, columns, report, table, with_stamps=False)
            if arrow.num_rows:
                yield arrow
        resource.not_found.update(i for i in group if short_id(i) not in seen)
    report.finish(table)
