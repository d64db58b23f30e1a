"""What the three reconciliation listings (``<crm>/listing.py``) share: columns and resource shape.

A listing reads every live record's id, cursor and compared fields through the CRM's cheapest
full-scan path. Its pages are Arrow tables built by the same ``to_arrow`` as ingestion, so a
listing loaded into the warehouse has exactly the types of the raw table it is compared with.
"""

from collections.abc import Iterator, Mapping, Sequence

import dlt
import pyarrow as pa

from sync_platform.ingest.sources.arrow import columns_hint


def pick_columns(
    crm: str, table: str, key: str, cursor: str, declared: Mapping[str, str], fields: Sequence[str]
) -> tuple[str, str, dict[str, str]]:
    """(id column, cursor column, declared columns) of a listing of ``fields``, in the CRM's field names."""
    unknown = sorted(set(fields) - set(declared))
    if unknown:
        raise ValueError(f"{crm}.{table}: cannot list unknown field(s) {unknown}; known: {sorted(declared)}")
    wanted = dict.fromkeys((key, cursor, *fields))
    return key, cursor, {name: declared[name] for name in wanted}


def listing_resource(pages: Iterator[pa.Table], table: str, key: str, columns: dict[str, str]):
    """One table's listing: replaced on every load (it is a snapshot, not a history)."""
    return dlt.resource(
        pages, name=table, primary_key=key, write_disposition="replace", columns=columns_hint(columns, key)
    )
