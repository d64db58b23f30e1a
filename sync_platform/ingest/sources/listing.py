"""Cheap source listings for reconciliation: every live record's id, cursor and compared fields.

Each CRM is read through its cheapest full-scan path, asking only for the fields that
reconciliation hashes: SOQL ``query`` (live rows only) at 2,000 per page, HubSpot's list
endpoint with just the needed ``properties`` (archived records are excluded by default),
Dataverse ``$select`` at 5,000 per page. Pages are Arrow tables built by the same
``to_arrow`` as ingestion, so a listing loaded into the warehouse has exactly the types of the
raw table it is compared with. The sources share ingestion's HTTP policy, so a listing spends
the same rate-limit budget and stops at the same daily reserve.
"""

# No `from __future__ import annotations`: dlt reads the sources' runtime annotations.

from collections.abc import Iterator, Mapping, Sequence

import dlt
import pyarrow as pa

from sync_platform.ingest.sources.arrow import columns_hint, to_arrow
from sync_platform.ingest.sources.auth import TokenProvider
from sync_platform.ingest.sources.common import SyncReport
from sync_platform.ingest.sources.dynamics import http_client as dynamics_client
from sync_platform.ingest.sources.dynamics.settings import CURSOR as DYNAMICS_CURSOR
from sync_platform.ingest.sources.dynamics.settings import OBJECTS as DYNAMICS_OBJECTS
from sync_platform.ingest.sources.dynamics.settings import PAGE_SIZE as DYNAMICS_PAGE
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy
from sync_platform.ingest.sources.hubspot import http_clients as hubspot_clients
from sync_platform.ingest.sources.hubspot.settings import LIST_PAGE
from sync_platform.ingest.sources.hubspot.settings import OBJECTS as HUBSPOT_OBJECTS
from sync_platform.ingest.sources.salesforce import http_client as salesforce_client
from sync_platform.ingest.sources.salesforce.settings import API_VERSION
from sync_platform.ingest.sources.salesforce.settings import CURSOR as SALESFORCE_CURSOR
from sync_platform.ingest.sources.salesforce.settings import OBJECTS as SALESFORCE_OBJECTS
from sync_platform.ingest.sources.salesforce.settings import PAGE_SIZE as SALESFORCE_PAGE


def listing_columns(crm: str, table: str, fields: Sequence[str]) -> tuple[str, str, dict[str, str]]:
    """(id column, cursor column, declared columns) of a listing, in the CRM's own field names."""
    if crm == "salesforce":
        declared = SALESFORCE_OBJECTS[table][1]
        key, cursor = "Id", SALESFORCE_CURSOR
    elif crm == "hubspot":
        _, cursor, declared = HUBSPOT_OBJECTS[table]
        declared = {"id": "string", **declared}
        key = "id"
    elif crm == "dynamics":
        _, key, declared = DYNAMICS_OBJECTS[table]
        cursor = DYNAMICS_CURSOR
    else:
        raise ValueError(f"unknown CRM {crm!r}")
    unknown = sorted(set(fields) - set(declared))
    if unknown:
        raise ValueError(f"{crm}.{table}: cannot list unknown field(s) {unknown}; known: {sorted(declared)}")
    wanted = dict.fromkeys((key, cursor, *fields))
    return key, cursor, {name: declared[name] for name in wanted}


def _resource(pages: Iterator[pa.Table], table: str, key: str, columns: dict[str, str]):
    return dlt.resource(pages, name=table, primary_key=key, write_disposition="replace",
                        columns=columns_hint(columns, key))


@dlt.source(name="salesforce_listing", section="salesforce", max_table_nesting=0)
def salesforce_listing(
    instance_url: str = dlt.config.value,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    fields: Mapping[str, Sequence[str]] = dlt.config.value,
    token_url: str | None = None,
    ca_file: str | None = None,
    page_size: int = SALESFORCE_PAGE,
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
) -> Iterator:
    """Live Contact/Account/Case rows: ``fields`` maps table -> the Salesforce fields to list."""
    base = instance_url.rstrip("/")
    report = report or SyncReport("salesforce")
    client = salesforce_client(instance_url, client_id, client_secret, token_url, ca_file, policy, report, auth)
    for table, wanted in fields.items():
        key, _, columns = listing_columns("salesforce", table, wanted)
        sobject = SALESFORCE_OBJECTS[table][0]
        yield _resource(_soql_pages(client, base, sobject, columns, page_size, report, table), table, key, columns)


def _soql_pages(client: CrmHttpClient, base: str, sobject: str, columns: dict[str, str], page_size: int,
                report: SyncReport, table: str) -> Iterator[pa.Table]:
    report.resource(table).start(None)
    headers = {"Sforce-Query-Options": f"batchSize={page_size}"}
    page = client.get_json(f"{base}/services/data/v{API_VERSION}/query/",
                           params={"q": f"SELECT {', '.join(columns)} FROM {sobject}"}, headers=headers)
    while True:
        arrow = to_arrow(page.get("records", []), columns, primary_key="Id")
        report.resource(table).saw(arrow.num_rows, 0, None)
        if arrow.num_rows:
            yield arrow
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return
        page = client.get_json(f"{base}{page['nextRecordsUrl']}", headers=headers)


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
    """Live contacts/companies/tickets through the list endpoint (100 per page, only ``fields``)."""
    base = host.rstrip("/")
    report = report or SyncReport("hubspot")
    client = hubspot_clients(base, access_token, client_id, client_secret, refresh_token, 100, 1, policy, report,
                             auth).list
    for table, wanted in fields.items():
        key, _, columns = listing_columns("hubspot", table, wanted)
        object_type = HUBSPOT_OBJECTS[table][0]
        yield _resource(_list_pages(client, base, object_type, columns, report, table), table, key, columns)


def _list_pages(client: CrmHttpClient, base: str, object_type: str, columns: dict[str, str], report: SyncReport,
                table: str) -> Iterator[pa.Table]:
    report.resource(table).start(None)
    properties = [name for name in columns if name != "id"]
    params: dict = {"limit": LIST_PAGE, "properties": ",".join(properties)}
    url = f"{base}/crm/v3/objects/{object_type}"
    while True:
        page = client.get_json(url, params=params)
        rows = [{**(r.get("properties") or {}), "id": r["id"]} for r in page.get("results", [])]
        arrow = to_arrow(rows, columns, primary_key="id")
        report.resource(table).saw(arrow.num_rows, 0, None)
        if arrow.num_rows:
            yield arrow
        nxt = (page.get("paging") or {}).get("next")
        if not nxt:
            return
        params = {**params, "after": nxt["after"]}


@dlt.source(name="dynamics_listing", section="dynamics", max_table_nesting=0)
def dynamics_listing(
    api_url: str = dlt.config.value,
    token_url: str = dlt.config.value,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    fields: Mapping[str, Sequence[str]] = dlt.config.value,
    scope: str | None = None,
    page_size: int = DYNAMICS_PAGE,
    policy: HttpPolicy | None = None,
    report: SyncReport | None = None,
    auth: TokenProvider | None = None,
) -> Iterator:
    """Rows of contacts/accounts/incidents with ``$select`` of only ``fields`` (Dataverse deletes are real)."""
    report = report or SyncReport("dynamics")
    client = dynamics_client(token_url, client_id, client_secret, scope, policy, report, auth)
    for table, wanted in fields.items():
        key, _, columns = listing_columns("dynamics", table, wanted)
        entity_set = DYNAMICS_OBJECTS[table][0]
        yield _resource(_odata_pages(client, api_url.rstrip("/"), entity_set, key, columns, page_size, report, table),
                        table, key, columns)


def _odata_pages(client: CrmHttpClient, api_url: str, entity_set: str, key: str, columns: dict[str, str],
                 page_size: int, report: SyncReport, table: str) -> Iterator[pa.Table]:
    report.resource(table).start(None)
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    page = client.get_json(f"{api_url}/{entity_set}", params={"$select": ",".join(columns)}, headers=headers)
    while True:
        arrow = to_arrow(page.get("value", []), columns, primary_key=key)
        report.resource(table).saw(arrow.num_rows, 0, None)
        if arrow.num_rows:
            yield arrow
        next_link = page.get("@odata.nextLink")
        if not next_link:
            return
        page = client.get_json(next_link, headers=headers)
