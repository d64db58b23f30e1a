"""Asset keys ``["raw", crm, object]``, one group per CRM, kinds, owners and descriptions."""

from __future__ import annotations

import dagster as dg
from dagster_dlt import DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData

DESCRIPTIONS = {
    "salesforce": "Salesforce {obj}, incremental on SystemModstamp (>= with Id tie-break, look-back window); "
    "deletes via queryAll/IsDeleted. Merged on Id.",
    "hubspot": "HubSpot {obj}, incremental through search on the last-modified property in windows under the "
    "10,000-result cap; deletes via archived=true. Merged on id.",
    "dynamics": "Dynamics 365 {obj} through change tracking (delta links); deletions from $deletedEntity "
    "rows. Merged on the primary key.",
}


class CrmTranslator(DagsterDltTranslator):
    def __init__(self, crm: str, owners: list[str]) -> None:
        self.crm = crm
        self.owners = owners

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        name = data.resource.name
        return spec.replace_attributes(
            key=dg.AssetKey(["raw", self.crm, name]),
            group_name=f"raw_{self.crm}",
            deps=[],
            description=DESCRIPTIONS[self.crm].format(obj=name),
            owners=self.owners,
            kinds={"dlt", self.crm, data.destination.destination_name if data.destination else "duckdb"},
            tags={"crm": self.crm, "layer": "raw"},
        )
