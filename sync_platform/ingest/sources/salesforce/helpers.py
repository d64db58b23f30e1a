"""Salesforce REST calls: the org's HTTP client, SOQL construction, ``query``/``queryAll`` paging, parsing.

SOQL is built in one place from parts that cannot carry an injection: sObject and field names
must be declared in ``settings.OBJECTS``, record ids must have the 15/18-character shape and are
quoted as SOQL string literals, datetimes are formatted from a ``datetime``. Nothing else reaches
a query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import polars as pl
import pyarrow as pa

from sync_platform.ingest.sources.arrow import to_arrow
from sync_platform.ingest.sources.auth import OAuthToken, TokenProvider
from sync_platform.ingest.sources.common import DELETED_AT, EPOCH, SyncReport, page_records, paging_link
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy

from .settings import API_VERSION, CURSOR, OBJECTS

_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")  # 15- or 18-character record ids
_DECLARED = {sobject: frozenset(columns) for sobject, columns in OBJECTS.values()}


def http_client(
    instance_url: str,
    client_id: str,
    client_secret: str,
    token_url: str | None,
    ca_file: str | None,
    policy: HttpPolicy | None,
    report: SyncReport,
    auth: TokenProvider | None,
) -> CrmHttpClient:
    """The org's HTTP client (OAuth client credentials unless ``auth`` is given): ingestion, by-id
    reads and reconciliation listings share it."""
    verify: str | bool = ca_file or True
    auth = auth or OAuthToken(
        "salesforce",
        token_url or f"{instance_url.rstrip('/')}/services/oauth2/token",
        client_id,
        client_secret,
        verify=verify,
    )
    return CrmHttpClient(
        "salesforce", auth, policy or HttpPolicy(budget_reserve=1000), verify=verify, stats=report.stats
    )


def is_record_id(value: str) -> bool:
    """Whether ``value`` has the shape of a 15- or 18-character record id (letters and digits only)."""
    return _ID.fullmatch(value) is not None


def soql_string(value: str) -> str:
    """``value`` as a quoted SOQL string literal: backslashes and single quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def soql_id(value: str) -> str:
    """A record id as a SOQL literal; anything but a 15/18-character id is refused."""
    if not is_record_id(value):
        raise ValueError(f"not a Salesforce record id: {value!r}")
    return soql_string(value)


def soql_datetime(value: datetime) -> str:
    """SOQL datetime literal in UTC with milliseconds (SOQL literals are unquoted)."""
    if not isinstance(value, datetime):
        raise TypeError(f"a SOQL datetime needs a datetime, got {type(value).__name__}")
    utc = value.astimezone(EPOCH.tzinfo)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def incremental_soql(sobject: str, fields: Iterable[str], start: datetime) -> str:
    """Rows changed at or after ``start``, by (cursor, Id): ``>=`` plus the tie-break loses no ties."""
    return _select(sobject, fields, where=f"{CURSOR} >= {soql_datetime(start)}", order_by=(CURSOR, "Id"))


def by_id_soql(sobject: str, fields: Iterable[str], ids: Iterable[str]) -> str:
    """The rows with the given record ids."""
    return _select(sobject, fields, where=f"Id IN ({', '.join(soql_id(i) for i in ids)})")


def listing_soql(sobject: str, fields: Iterable[str]) -> str:
    """Every row of the sObject (the reconciliation listing)."""
    return _select(sobject, fields)


def _select(
    sobject: str, fields: Iterable[str], where: str | None = None, order_by: Sequence[str] = ()
) -> str:
    """``SELECT <fields> FROM <sobject> [WHERE ...] [ORDER BY ...]``, names checked against the settings."""
    fields = list(fields)
    undeclared = sorted((set(fields) | set(order_by)) - _DECLARED.get(sobject, frozenset()))
    if sobject not in _DECLARED or undeclared:
        raise ValueError(f"SOQL names must be declared in settings.OBJECTS: {sobject!r}, {undeclared}")
    clauses = ["SELECT", ", ".join(fields), "FROM", sobject]
    if where:
        clauses += ["WHERE", where]
    if order_by:
        clauses += ["ORDER BY", ", ".join(order_by)]
    return " ".join(clauses)


def query_pages(
    client: CrmHttpClient, base: str, soql: str, page_size: int, include_deleted: bool = True
) -> Iterator[list[dict]]:
    """Pages of records of one SOQL query: through ``queryAll`` (deleted rows included) or,
    without ``include_deleted``, through ``query`` (live rows only)."""
    headers = {"Sforce-Query-Options": f"batchSize={page_size}"}
    endpoint = "queryAll" if include_deleted else "query"
    url = f"{base}/services/data/v{API_VERSION}/{endpoint}/"
    page = client.get_json(url, params={"q": soql}, headers=headers)
    while True:
        yield page_records(page, "records", "salesforce", url)
        if page.get("done") is not False or not page.get("nextRecordsUrl"):
            return
        page = client.get_json(
            paging_link(page["nextRecordsUrl"], base, "salesforce", path_only=True), headers=headers
        )


def records_page(
    records: list[dict], columns: dict[str, str], report: SyncReport, table: str, with_stamps: bool = True
) -> pa.Table:
    """A page as Arrow: ``IsDeleted`` rows get ``deleted_at`` (their last stamp, when they were deleted)."""
    deleted_at = pl.when(pl.col("IsDeleted")).then(pl.col(CURSOR)).otherwise(None)
    arrow = to_arrow(
        records,
        columns,
        extra={DELETED_AT: deleted_at},
        primary_key="Id",
        rejects=report.resource(table).rejects,
    )
    stamps = arrow.column(CURSOR).to_pylist()
    newest = max((r for r in stamps if r is not None), default=None)
    report.resource(table).saw(
        arrow.num_rows, sum(1 for r in records if r.get("IsDeleted")), newest, stamps if with_stamps else None
    )
    return arrow


def short_id(record_id: object) -> str:
    """The case-sensitive 15-character form: Salesforce answers 18-character ids for either."""
    return str(record_id or "")[:15]
