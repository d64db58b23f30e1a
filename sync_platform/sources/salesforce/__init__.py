"""Salesforce source: Contact, Account and Case, incremental on ``SystemModstamp``.

Reads ``queryAll`` (so deleted rows arrive with ``IsDeleted = true``) with
``WHERE SystemModstamp >= :start ORDER BY SystemModstamp, Id``: ``>=`` plus the id tie-break
never loses rows sharing a stamp, and the start is stepped back by a look-back window so a
record committed late with an older stamp is re-read. Merge on ``Id`` makes re-reads harmless.
"""

# No `from __future__ import annotations` here: dlt finds the incremental parameter by its
# runtime annotation, and a string annotation silently turns every run into a full read.


from collections.abc import Iterator, Sequence
from datetime import datetime

import dlt
import polars as pl
import pyarrow as pa

from ..arrow import columns_hint, to_arrow
from ..auth import OAuthToken, TokenProvider
from ..common import DELETED_AT, EPOCH, SyncReport, require_known
from ..http import CrmHttpClient, HttpPolicy
from .settings import API_VERSION, CURSOR, OBJECTS, PAGE_SIZE


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
    verify: str | bool = ca_file or True
    auth = auth or OAuthToken("salesforce", token_url or f"{instance_url.rstrip('/')}/services/oauth2/token",
                              client_id, client_secret, verify=verify)
    client = CrmHttpClient("salesforce", auth, policy or HttpPolicy(budget_reserve=1000), verify=verify,
                           stats=report.stats)
    base = instance_url.rstrip("/")
    for table in objects:
        sobject, columns = OBJECTS[table]
        yield dlt.resource(
            _sobject_pages, name=table, primary_key="Id", write_disposition="merge",
            columns=_hints(columns, hard_delete),
        )(client, base, sobject, columns, page_size, report, table,
          dlt.sources.incremental(CURSOR, initial_value=EPOCH, lag=look_back_seconds, range_start="closed"))


def _hints(columns: dict[str, str], hard_delete: bool) -> dict:
    hints = columns_hint(columns, "Id")
    hints[DELETED_AT] = {"data_type": "timestamp", "nullable": True}
    if hard_delete:
        hints["IsDeleted"]["hard_delete"] = True
    return hints


def _sobject_pages(client: CrmHttpClient, base: str, sobject: str, columns: dict[str, str], page_size: int,
                   report: SyncReport, table: str, updated: dlt.sources.incremental) -> Iterator[pa.Table]:
    start: datetime = updated.start_value or EPOCH
    report.resource(table).start(start, updated.lag or 0.0)
    soql = (f"SELECT {', '.join(columns)} FROM {sobject} WHERE {CURSOR} >= {_soql_datetime(start)} "
            f"ORDER BY {CURSOR}, Id")
    headers = {"Sforce-Query-Options": f"batchSize={page_size}"}
    page = client.get_json(f"{base}/services/data/v{API_VERSION}/queryAll/", params={"q": soql}, headers=headers)
    while True:
        records = page.get("records", [])
        deleted_at = pl.when(pl.col("IsDeleted")).then(pl.col(CURSOR)).otherwise(None)
        arrow = to_arrow(records, columns, extra={DELETED_AT: deleted_at}, primary_key="Id")
        stamps = arrow.column(CURSOR).to_pylist()
        newest = max((r for r in stamps if r is not None), default=None)
        report.resource(table).saw(arrow.num_rows, sum(1 for r in records if r.get("IsDeleted")), newest, stamps)
        if arrow.num_rows:
            yield arrow
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return
        page = client.get_json(f"{base}{page['nextRecordsUrl']}", headers=headers)


def _soql_datetime(value: datetime) -> str:
    """SOQL datetime literal in UTC with milliseconds (SOQL literals are unquoted)."""
    utc = value.astimezone(EPOCH.tzinfo)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
