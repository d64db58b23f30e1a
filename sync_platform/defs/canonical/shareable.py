"""``canonical/contacts_shareable``: the contacts other systems may receive, per the consent policy.

A table rather than a view: dlt replaces ``canonical.contacts`` on every build, which a dependent
view would not survive on PostgreSQL, and a table makes the shared set an asset with its own
history. Erasure deletes from it at once; the next build re-derives it.
"""

import dagster as dg

from sync_platform.consent import consent_counts, shareable_contacts
from sync_platform.erasure import ErasureList
from sync_platform.security.canonical_fields import SHAREABLE_TABLE
from sync_platform.warehouse import Warehouse

from ..ingest.assets import WAREHOUSE_POOL


@dg.asset(
    key=["canonical", SHAREABLE_TABLE], deps=[dg.AssetKey(["canonical", "contacts"])], group_name="canonical",
    kinds={"polars", "duckdb"}, pool=WAREHOUSE_POOL, tags={"layer": "canonical"}, owners=["team:data"],
)
def contacts_shareable(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Contacts that may be shared downstream: live, not opted out in any CRM, not erased.

    Sensitive columns stay encrypted. Policy: ``sync_platform/consent.py`` and the README.
    """
    warehouse = Warehouse.from_env()
    if not warehouse.table_exists("canonical", "contacts"):
        return dg.MaterializeResult(metadata={"shareable": 0, "note": "canonical.contacts does not exist yet"})
    contacts = warehouse.read_frame("SELECT * FROM canonical.contacts")
    shareable = shareable_contacts(contacts, ErasureList.load(warehouse).records)
    warehouse.write_frame(shareable, "canonical", SHAREABLE_TABLE)
    return dg.MaterializeResult(metadata=consent_counts(contacts, shareable))


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[contacts_shareable])
