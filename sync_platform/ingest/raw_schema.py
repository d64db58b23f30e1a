"""What the raw tables hold: the columns each CRM source asks for, named as dlt writes them.

Derived from the sources' own field lists (``sync_platform/ingest/sources/<crm>/settings.py``) and dlt's
naming convention, so a mapping that names a column no source reads fails when it is loaded, not
halfway through a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from dlt.common.normalizers.naming.snake_case import NamingConvention

from sync_platform.ingest.sources.dynamics import settings as dynamics_settings
from sync_platform.ingest.sources.hubspot import settings as hubspot_settings
from sync_platform.ingest.sources.salesforce import settings as salesforce_settings

LOAD_ID = "_dlt_load_id"  # the load that last wrote a raw row
DLT_SYSTEM_COLUMNS = frozenset({LOAD_ID, "_dlt_id"})
"""Columns dlt may add to any table: bookkeeping, never CRM fields (not counted as ignored)."""

# columns a source adds beyond the CRM fields it reads (see each source's __init__)
_EXTRA_COLUMNS = {
    "salesforce": ("deleted_at",),
    "hubspot": ("id", "archived", "deleted_at"),
    "dynamics": ("deleted_at", "_deleted"),
}


@dataclass(frozen=True)
class RawTable:
    crm: str
    table: str
    crm_object: str  # the sObject, HubSpot object type or Dataverse entity set
    fields: dict[str, str]  # CRM field name -> declared kind (sources.arrow: string/bool/int/datetime)
    cursor_field: str  # the CRM field incremental reads order by
    key_field: str  # the CRM's record id, the merge key

    @property
    def key_column(self) -> str:
        return raw_column(self.key_field)

    @property
    def cursor_column(self) -> str:
        return raw_column(self.cursor_field)

    @property
    def columns(self) -> frozenset[str]:
        return frozenset(raw_column(name) for name in self.fields) | frozenset(_EXTRA_COLUMNS[self.crm])


@cache
def _naming() -> NamingConvention:
    return NamingConvention()


def raw_column(crm_field: str) -> str:
    """The column dlt writes for a CRM field: ``Customer_Status__c`` -> ``customer_status__c``."""
    return _naming().normalize_path(crm_field)


def _tables() -> dict[str, dict[str, RawTable]]:
    return {
        "salesforce": {
            t: RawTable("salesforce", t, sobject, fields, salesforce_settings.CURSOR, "Id")
            for t, (sobject, fields) in salesforce_settings.OBJECTS.items()
        },
        "hubspot": {
            t: RawTable("hubspot", t, object_type, fields, cursor, hubspot_settings.ID)
            for t, (object_type, cursor, fields) in hubspot_settings.OBJECTS.items()
        },
        "dynamics": {
            t: RawTable("dynamics", t, entity_set, fields, dynamics_settings.CURSOR, pk)
            for t, (entity_set, pk, fields) in dynamics_settings.OBJECTS.items()
        },
    }


RAW_TABLES: dict[str, dict[str, RawTable]] = _tables()


def raw_table(crm: str, table: str) -> RawTable | None:
    """The raw table a CRM source writes, or None when the platform has no source for it."""
    return RAW_TABLES.get(crm, {}).get(table)
