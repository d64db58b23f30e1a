"""HubSpot listing for reconciliation: every live record's id, cursor and compared fields.

The list endpoint with just the needed ``properties`` (archived records are excluded by
default), 100 per page. It shares ingestion's HTTP policy, so a listing spends the same
rate-limit budget.
"""

# No `from __future__ import annotations`: dlt reads the sources' runtime annotations.

from collections.abc import Iterator, Mapping, Sequence

import dlt
import pyarrow as pa

from sync_platform.ingest.sources.auth import TokenProvider
from sync_platform.ingest.sources.common import SyncReport
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy
from sync_platform.ingest.sources.listing_common import listing_page, listing_resource, pick_columns

from .helpers import http_clients, list_pages
from .settings import LIST_PAGE, OBJECTS


def listing_columns(table: str, fields: Sequence[str]) -> tuple[str, str, dict[str, str]]:
    """(id column, cursor column, declared columns) of a listing of ``fields`` of ``table``."""
    _, cursor, declared = OBJECTS[table]
    return pick_columns("hubspot", table, "id", cursor, {"id": "string", **declared}, fields)


@dlt.source(name="hubspot_listing", section="hubspot", max_table_nesting=0)
def hubspot_listing(
    host: str = "https://api.hubapi.com",
    access_token: str | None = dlt.secrets.value,
    fields: Mapping[str, Sequence[str]] = dlt.config.value,
    client_id: str | None = None,
    client_secret: str | None = None,
    refresh_token: str | None = None,
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
) -> Iterator:
    """Live contacts/companies/tickets through the list endpoint (100 per page, only ``fields``).

    Args:
        host: as for ``hubspot_source``; so are the credentials, ``policy`` and ``auth``.
        fields: table -> the properties to compare (id and cursor are always listed).
        report: collects what each listing saw.

    Yields:
        One replace resource per table, primary key ``id``.
    """
    base = host.rstrip("/")
    report = report or SyncReport("hubspot")
    client = http_clients(
        base, access_token, client_id, client_secret, refresh_token, 100, 1, policy, report, auth
    ).list
    for table, wanted in fields.items():
        key, _, columns = listing_columns(table, wanted)
        object_type = OBJECTS[table][0]
        pages = _list_pages(client, base, object_type, columns, report, table)
        yield listing_resource(pages, table, key, columns)


def _list_pages(
    client: CrmHttpClient,
    base: str,
    object_type: str,
    columns: dict[str, str],
    report: SyncReport,
    table: str,
) -> Iterator[pa.Table]:
    """Every live record of one object type with only ``columns``.

    Args:
        client: the portal's list client.
        base: the API host without its trailing slash.
        object_type: the CRM object type (``contacts``).
        columns: ``id`` and the properties to read, with their declared types.
        report: collects what the listing saw.
        table: the resource's table name (``contacts``).

    Yields:
        One Arrow table per non-empty page.
    """
    report.resource(table).start(None)
    properties = [name for name in columns if name != "id"]
    params: dict = {"limit": LIST_PAGE, "properties": ",".join(properties)}
    for results in list_pages(client, base, object_type, params):
        rows = [{**(r.get("properties") or {}), "id": r["id"]} for r in results]
        arrow = listing_page(rows, columns, "id", report.resource(table))
        if arrow.num_rows:
            yield arrow
