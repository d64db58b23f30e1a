"""Salesforce listing for reconciliation: every live row's id, cursor and compared fields.

SOQL ``query`` (live rows only, unlike ingestion's ``queryAll``) at 2,000 per page, selecting
only the fields reconciliation hashes. It shares ingestion's HTTP policy, so a listing spends
the same rate-limit budget and stops at the same daily reserve.
"""

# No `from __future__ import annotations`: dlt reads the sources' runtime annotations.

from collections.abc import Iterator, Mapping, Sequence

import dlt
import pyarrow as pa

from sync_platform.ingest.sources.auth import TokenProvider
from sync_platform.ingest.sources.common import SyncReport
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy
from sync_platform.ingest.sources.listing_common import listing_page, listing_resource, pick_columns

from .helpers import http_client, listing_soql, query_pages
from .settings import CURSOR, OBJECTS, PAGE_SIZE


def listing_columns(table: str, fields: Sequence[str]) -> tuple[str, str, dict[str, str]]:
    """(id column, cursor column, declared columns) of a listing of ``fields`` of ``table``."""
    return pick_columns("salesforce", table, "Id", CURSOR, OBJECTS[table][1], fields)


@dlt.source(name="salesforce_listing", section="salesforce", max_table_nesting=0)
def salesforce_listing(
    instance_url: str = dlt.config.value,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    fields: Mapping[str, Sequence[str]] = dlt.config.value,
    token_url: str | None = None,
    ca_file: str | None = None,
    page_size: int = PAGE_SIZE,
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
) -> Iterator:
    """Live Contact/Account/Case rows: ``fields`` maps table -> the Salesforce fields to list.

    Args:
        instance_url: as for ``salesforce_source``; so are the credentials, ``token_url``,
            ``ca_file``, ``policy`` and ``auth``.
        fields: table -> the fields to compare (id and cursor are always listed).
        page_size: records per ``query`` page.
        report: collects what each listing saw.

    Yields:
        One replace resource per table, primary key ``Id``.
    """
    base = instance_url.rstrip("/")
    report = report or SyncReport("salesforce")
    client = http_client(instance_url, client_id, client_secret, token_url, ca_file, policy, report, auth)
    for table, wanted in fields.items():
        key, _, columns = listing_columns(table, wanted)
        sobject = OBJECTS[table][0]
        pages = _soql_pages(client, base, sobject, columns, page_size, report, table)
        yield listing_resource(pages, table, key, columns)


def _soql_pages(
    client: CrmHttpClient,
    base: str,
    sobject: str,
    columns: dict[str, str],
    page_size: int,
    report: SyncReport,
    table: str,
) -> Iterator[pa.Table]:
    """Every live row of one sObject with only ``columns``.

    Args:
        client: the org's HTTP client.
        base: the instance URL without its trailing slash.
        sobject: the sObject to list (``Contact``).
        columns: the fields to select and their declared types.
        page_size: records per ``query`` page.
        report: collects what the listing saw.
        table: the resource's table name (``contacts``).

    Yields:
        One Arrow table per non-empty page.
    """
    report.resource(table).start(None)
    soql = listing_soql(sobject, columns)
    for records in query_pages(client, base, soql, page_size, include_deleted=False):
        arrow = listing_page(records, columns, "Id", report.resource(table))
        if arrow.num_rows:
            yield arrow
