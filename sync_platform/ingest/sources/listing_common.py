"""What the three reconciliation listings (``<crm>/listing.py``) share: columns, pages and resource shape.

A listing reads every live record's id, cursor and compared fields through the CRM's cheapest
full-scan path. Its pages are Arrow tables built by the same ``to_arrow`` as ingestion, so a
listing loaded into the warehouse has exactly the types of the raw table it is compared with.
"""

from collections.abc import Iterator, Mapping, Sequence

import dlt
import pyarrow as pa

from sync_platform.core.errors import RejectedRecord
from sync_platform.ingest.sources.arrow import STRING, columns_hint, to_arrow
from sync_platform.ingest.sources.common import ResourceReport

UNREADABLE = "unreadable"  # why a listed record could not be read; its other columns are then null


def pick_columns(
    crm: str, table: str, key: str, cursor: str, declared: Mapping[str, str], fields: Sequence[str]
) -> tuple[str, str, dict[str, str]]:
    """(id column, cursor column, declared columns) of a listing of ``fields``, in the CRM's field names."""
    unknown = sorted(set(fields) - set(declared))
    if unknown:
        raise ValueError(f"{crm}.{table}: cannot list unknown field(s) {unknown}; known: {sorted(declared)}")
    wanted = dict.fromkeys((key, cursor, *fields))
    return key, cursor, {name: declared[name] for name in wanted}


def listing_page(
    rows: Sequence[Mapping], columns: Mapping[str, str], key: str, resource: ResourceReport
) -> pa.Table:
    """One listed page: the records that convert, and for each that does not, its id and why.

    A record with a value ``to_arrow`` cannot convert must neither fail the CRM's whole
    reconciliation nor vanish from the listing: absent, it would look deleted at the CRM and
    remediation would delete its warehouse row. Listed as unreadable, reconciliation leaves it
    out of the comparison and reports it. (Ingestion dead-letters the same record on its own.)
    """
    declared = {**columns, UNREADABLE: STRING}
    rejects: list[RejectedRecord] = []
    readable = to_arrow(rows, declared, primary_key=key, rejects=rejects)
    resource.saw(readable.num_rows, 0, None)
    resource.rejects += rejects
    marked = [{key: r.record_id, UNREADABLE: f"{r.kind}: {r.reason}"} for r in rejects if r.record_id]
    if not marked:
        return readable
    return pa.concat_tables([readable, to_arrow(marked, declared, primary_key=key)])


def listing_resource(pages: Iterator[pa.Table], table: str, key: str, columns: dict[str, str]):
    """One table's listing: replaced on every load (it is a snapshot, not a history)."""
    return dlt.resource(
        pages,
        name=table,
        primary_key=key,
        write_disposition="replace",
        columns=columns_hint({**columns, UNREADABLE: STRING}, key),
    )
