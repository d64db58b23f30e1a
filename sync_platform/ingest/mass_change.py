"""A CRM-side mass change: one sync that changed the same field in an implausible share of an object.

The corruption of the incident can come from the CRM itself (an import there misread a column):
the sync then loads it faithfully, as a mirror must. The raw history knows, per load, how many
records changed each field since their previous version; above ``mass_change`` in ``sync.yaml``
the ingestion step raises a ``mass_change`` alert naming CRM, object, field, count and example ids,
and holds the canonical entity the object feeds (``sync_platform.ops.holds``) until a person
releases it, so the corruption does not spread downstream.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync_platform.core.config import MassChangeConfig
from sync_platform.ingest.history import Recorded
from sync_platform.ops.alerts import Finding

MASS_CHANGE = "mass_change"


@dataclass(frozen=True)
class MassChange:
    crm: str
    table: str
    field: str
    changed: int
    live_rows: int
    limit: float
    examples: tuple[str, ...]

    @property
    def share(self) -> float:
        return self.changed / self.live_rows if self.live_rows else 0.0

    @property
    def alert_key(self) -> str:
        return f"{MASS_CHANGE}:{self.crm}:{self.table}:{self.field}"

    @property
    def message(self) -> str:
        return (
            f"{self.crm} {self.table}.{self.field} changed in {self.changed} of {self.live_rows} records "
            f"in one sync ({self.share:.1%} > {self.limit:.1%}), e.g. {', '.join(self.examples)}"
        )

    def finding(self, entity: str | None, hold_id: str | None) -> Finding:
        held = f"; canonical {entity} held ({hold_id}): `sync-platform hold release {hold_id} --reason ...`"
        return Finding(
            key=self.alert_key,
            severity="error",
            finding=MASS_CHANGE,
            message=self.message + (held if hold_id else ""),
            crm=self.crm,
            asset=f"raw/{self.crm}/{self.table}",
            details={
                "crm": self.crm,
                "object": self.table,
                "field": self.field,
                "changed": self.changed,
                "live_rows": self.live_rows,
                "share": round(self.share, 5),
                "limit": self.limit,
                "example_ids": list(self.examples),
                "entity": entity,
                "hold_id": hold_id,
            },
        )


def mass_changes(recorded: Recorded, config: MassChangeConfig) -> list[MassChange]:
    """Fields of one load whose changed share of the object's live records is above the limit."""
    if recorded.live_rows < config.min_rows:
        return []
    limit = config.limit(recorded.crm, recorded.table)
    return [
        MassChange(
            recorded.crm,
            recorded.table,
            field,
            n,
            recorded.live_rows,
            limit,
            tuple(recorded.examples.get(field, ())),
        )
        for field, n in sorted(recorded.changed_fields.items())
        if n / recorded.live_rows > limit
    ]
