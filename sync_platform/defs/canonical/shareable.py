"""``canonical/contacts_shareable``: the contacts other systems may receive, per the consent policy.

A table rather than a view: dlt replaces ``canonical.contacts`` on every build, which a dependent
view would not survive on PostgreSQL, and a table makes the shared set an asset with its own
history. Erasure deletes from it at once; the next build re-derives it.
"""

import dagster as dg

from sync_platform.canonical.consent import consent_counts, shareable_contacts
from sync_platform.canonical.erasure import ErasureList
from sync_platform.canonical.protection import SHAREABLE_TABLE
from sync_platform.defs.resources import WAREHOUSE_POOL, WarehouseResource


@dg.asset(
    key=["canonical", SHAREABLE_TABLE],
    deps=[dg.AssetKey(["canonical", "contacts"])],
    group_name="canonical",
    kinds={"polars", "duckdb"},
    pool=WAREHOUSE_POOL,
    tags={"layer": "canonical"},
    owners=["team:data"],
)
def contacts_shareable(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Contacts that may be shared downstream: live, not opted out in any CRM, not erased.

    Sensitive columns stay encrypted. Policy: ``sync_platform/canonical/consent.py`` and the README.
    """
    store = warehouse.get()
    if not store.table_exists("canonical", "contacts"):
        return dg.MaterializeResult(
            metadata={"shareable": 0, "note": "canonical.contacts does not exist yet"}
        )
    contacts = store.read_frame("SELECT * FROM canonical.contacts")
    shareable = shareable_contacts(contacts, ErasureList.load(store).records)
    store.write_frame(shareable, "canonical", SHAREABLE_TABLE)
    return dg.MaterializeResult(metadata=consent_counts(contacts, shareable))


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[contacts_shareable])
