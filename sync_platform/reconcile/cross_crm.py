"""Do the CRMs agree with each other? Conflicting values across linked golden records.

The same customer (one ``customer_id``) or company (one ``account_id``) held by several CRMs
should carry the same facts. For every golden record present in at least two systems, each
compared field conflicts when its non-null values differ between systems. A value a system's
mapping does not read from the CRM (no ``source``: a default fills it, as Dynamics contacts'
``lifecycle_stage: other``) is no opinion of that system and is not compared. The outcome has the
shape of a CRM → warehouse diff (a ``Diff`` whose differing ids are golden ids, class
``diverged``), so it slots into the drift history and the report as one more direction.
Values never leave this module: only golden ids, field names and system names.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from sync_platform.core.sql import ident, idents, sql
from sync_platform.reconcile.diff import CLASSES, Diff

if TYPE_CHECKING:
    from sync_platform.canonical.mapping import Mapping as CrmMapping

ACROSS_CRMS = "across_crms"
# (golden id column, compared fields): identity fields (email, domain) define the link and are not compared
COMPARED = {
    "contacts": (
        "customer_id",
        ("first_name", "last_name", "phone", "title", "lifecycle_stage", "email_opt_out"),
    ),
    "accounts": ("account_id", ("name", "industry", "country", "phone")),
}


@dataclass
class CrossCrmOutcome:
    entity: str
    linked: int  # golden records held by two or more CRMs
    conflicts: pl.DataFrame  # golden_id, field, systems (one row per conflicting field of a golden record)
    diff: Diff

    def field_counts(self) -> pl.DataFrame:
        """(field, differing): golden records in conflict per field, worst first (the report's top fields)."""
        if self.conflicts.is_empty():
            return pl.DataFrame(schema={"field": pl.String, "differing": pl.UInt32})
        return (
            self.conflicts.group_by("field")
            .agg(pl.len().cast(pl.UInt32).alias("differing"))
            .sort(["differing", "field"], descending=[True, False])
        )


def unsourced_fields(mappings: Mapping[str, CrmMapping], entity: str) -> dict[str, frozenset[str]]:
    """Per system, the compared fields its mapping fills without reading the CRM (a default only)."""
    golden, fields = COMPARED[entity]
    out = {}
    for crm, mapping in mappings.items():
        spec = mapping.entity(entity.removesuffix("s")).fields
        out[crm] = frozenset(f for f in fields if f not in spec or spec[f].source is None)
    return out


def cross_crm_conflicts(
    frame: pl.DataFrame,
    entity: str,
    fields: Sequence[str] | None = None,
    unsourced: Mapping[str, Collection[str]] | None = None,
) -> CrossCrmOutcome:
    """Compare linked records of one canonical table (live rows, sensitive columns decrypted).

    ``unsourced``: per system, fields whose values are defaults, not the CRM's (not compared).
    """
    golden, default_fields = COMPARED[entity]
    fields = [f for f in (fields or default_fields) if f in frame.columns]
    live = frame.filter(pl.col("deleted_at").is_null()) if "deleted_at" in frame.columns else frame
    live = live.filter(pl.col(golden).is_not_null())
    linked_ids = (
        live.group_by(golden)
        .agg(pl.col("source_system").n_unique().alias("systems"))
        .filter(pl.col("systems") > 1)
        .select(golden)
    )
    linked = live.join(linked_ids, on=golden, how="semi")
    parts = []
    for name in fields:
        silent = [system for system, names in (unsourced or {}).items() if name in names]
        values = (
            linked.filter(~pl.col("source_system").is_in(silent))
            .select(golden, "source_system", pl.col(name).cast(pl.String).alias("value"))
            .drop_nulls("value")
        )
        conflicting = (
            values.group_by(golden)
            .agg(
                pl.col("value").n_unique().alias("distinct"),
                pl.col("source_system").unique().sort().str.join("+").alias("systems"),
            )
            .filter(pl.col("distinct") > 1)
        )
        parts.append(
            conflicting.select(pl.col(golden).alias("golden_id"), pl.lit(name).alias("field"), "systems")
        )
    conflicts = (
        pl.concat(parts)
        if parts
        else pl.DataFrame(schema={"golden_id": pl.String, "field": pl.String, "systems": pl.String})
    )
    ids = conflicts["golden_id"].unique().sort()
    none = pl.lit(None, pl.Datetime("us", "UTC"))
    differences = pl.DataFrame({"id": ids}).select(
        pl.col("id").cast(pl.String),
        pl.lit("diverged").alias("class"),
        none.alias("source_cursor"),
        none.alias("warehouse_cursor"),
    )
    counts = {cls: 0 for cls in CLASSES} | {"diverged": ids.len()}
    n_linked = linked_ids.height
    diff = Diff(
        differences=differences,
        source_records=n_linked,
        warehouse_records=n_linked,
        counts=counts,
        drift_share=ids.len() / max(n_linked, 1),
    )
    return CrossCrmOutcome(entity, n_linked, conflicts, diff)


def linked_conflicts(
    warehouse, entity: str, mappings: Mapping[str, CrmMapping] | None = None
) -> CrossCrmOutcome | None:
    """Read one canonical table (only the compared columns, sensitive ones decrypted) and compare it.

    ``mappings`` (default: the mapping files) tell which fields each CRM does not source.
    """
    from sync_platform.canonical.mapping import load_mappings
    from sync_platform.canonical.protection import sensitive_columns
    from sync_platform.security.encryption import decrypt_frame

    golden, fields = COMPARED[entity]
    if not warehouse.table_exists("canonical", entity):
        return None
    columns = idents(["source_system", "source_id", "deleted_at", golden, *fields])
    frame = warehouse.read_frame(
        sql("SELECT {columns} FROM {table}", columns=columns, table=ident("canonical", entity))
    )
    model_entity = entity.removesuffix("s")
    encrypted = [c for c in sensitive_columns(model_entity) if c in fields]
    unsourced = unsourced_fields(mappings if mappings is not None else load_mappings(), entity)
    return cross_crm_conflicts(
        decrypt_frame(frame, encrypted) if encrypted else frame, entity, unsourced=unsourced
    )
