"""Dynamics listing for reconciliation: every row's id, cursor and compared fields.

Dataverse ``$select`` of only the compared attributes at 5,000 per page (deletions in
Dataverse are real, so every row listed is live). It shares ingestion's HTTP policy, so a
listing spends the same rate-limit budget.
"""

# No `from __future__ import annotations`: dlt reads the sources' runtime annotations.

from collections.abc import Iterator, Mapping, Sequence

import dlt
import pyarrow as pa

from sync_platform.ingest.sources.auth import TokenProvider
from sync_platform.ingest.sources.common import SyncReport
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy
from sync_platform.ingest.sources.listing_common import listing_page, listing_resource, pick_columns

from .helpers import http_client, odata_pages
from .settings import CURSOR, OBJECTS, PAGE_SIZE


def listing_columns(table: str, fields: Sequence[str]) -> tuple[str, str, dict[str, str]]:
    """(id column, cursor column, declared columns) of a listing of ``fields`` of ``table``."""
    _, key, declared = OBJECTS[table]
    return pick_columns("dynamics", table, key, CURSOR, declared, fields)


@dlt.source(name="dynamics_listing", section="dynamics", max_table_nesting=0)
def dynamics_listing(
    api_url: str = dlt.config.value,
    token_url: str = dlt.config.value,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    fields: Mapping[str, Sequence[str]] = dlt.config.value,
    scope: str | None = None,
    page_size: int = PAGE_SIZE,
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
) -> Iterator:
    """Rows of contacts/accounts/incidents with ``$select`` of only ``fields`` (Dataverse deletes are real).

    Args:
        api_url: as for ``dynamics_source``; so are ``token_url``, the credentials, ``scope``,
            ``policy`` and ``auth``.
        fields: table -> the attributes to compare (id and cursor are always listed).
        page_size: rows per page (``odata.maxpagesize``).
        report: collects what each listing saw.

    Yields:
        One replace resource per table, keyed by the entity's primary key.
    """
    report = report or SyncReport("dynamics")
    client = http_client(token_url, client_id, client_secret, scope, policy, report, auth)
    for table, wanted in fields.items():
        key, _, columns = listing_columns(table, wanted)
        entity_set = OBJECTS[table][0]
        pages = _odata_pages(client, api_url.rstrip("/"), entity_set, key, columns, page_size, report, table)
        yield listing_resource(pages, table, key, columns)


def _odata_pages(
    client: CrmHttpClient,
    api_url: str,
    entity_set: str,
    key: str,
    columns: dict[str, str],
    page_size: int,
    report: SyncReport,
    table: str,
) -> Iterator[pa.Table]:
    """Every row of one entity set with only ``columns``.

    Args:
        client: the environment's HTTP client.
        api_url: the Web API root without its trailing slash.
        entity_set: the entity set to list (``contacts``).
        key: its primary key attribute (``contactid``).
        columns: the attributes to select and their declared types.
        page_size: rows per page (``odata.maxpagesize``).
        report: collects what the listing saw.
        table: the resource's table name (``contacts``).

    Yields:
        One Arrow table per non-empty page.
    """
    report.resource(table).start(None)
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    params = {"$select": ",".join(columns)}
    for rows in odata_pages(client, f"{api_url}/{entity_set}", params, headers):
        arrow = listing_page(rows, columns, key, report.resource(table))
        if arrow.num_rows:
            yield arrow
