"""Canonical → CRM: did each write the CRM acknowledged actually show up in the CRM?

A CRM can answer 2xx and not keep the value: Dataverse silently drops read-only columns, a
workflow or trigger rewrites the field right after, a duplicate rule merges the record away. For
each write kept in ``ops.echoes``, the first version of the record the warehouse read after the
write (the raw history) must hold the value written. If it does not, the write was acknowledged
but is not visible: a ``writeback_not_visible`` alert names the CRM, object, field and records.
Writes whose record has not been read since are simply not verified yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.history import RECORDED_AT, RawHistory
from sync_platform.ingest.raw_schema import RAW_TABLES, raw_column
from sync_platform.ops.alerts import AlertBook, Finding
from sync_platform.ops.echoes import as_text, written_since

NOT_VISIBLE = "writeback_not_visible"


@dataclass
class Verification:
    confirmed: int = 0
    unverified: int = 0  # not read back yet
    not_visible: dict[tuple[str, str, str], list[str]] = field(
        default_factory=dict
    )  # (crm, obj, field) -> ids


def verify_writes(warehouse: Warehouse, crms: list[str]) -> Verification:
    out = Verification()
    history = RawHistory(warehouse)
    for crm in crms:
        tables = {raw.crm_object: name for name, raw in RAW_TABLES[crm].items()}
        writes = written_since(warehouse, crm)
        by_object: dict[str, list] = {}
        for write in writes:
            by_object.setdefault(write[0], []).append(write)
        for crm_object, items in by_object.items():
            table = tables.get(crm_object)
            if table is None:
                continue
            key = RAW_TABLES[crm][table].key_column
            versions: dict[str, list[dict]] = {}
            ids = sorted({record_id for _, record_id, _, _, _ in items})
            for row in history.versions_of(crm, table, ids).iter_rows(named=True):
                versions.setdefault(str(row[key]), []).append(row)
            for _, record_id, crm_field, value, written_at in items:
                after = [v for v in versions.get(record_id, []) if v[RECORDED_AT] > written_at]
                if not after:
                    out.unverified += 1
                elif as_text(after[0].get(raw_column(crm_field))) == value:
                    out.confirmed += 1
                else:
                    out.not_visible.setdefault((crm, crm_object, crm_field), []).append(record_id)
    return out


def report_not_visible(warehouse: Warehouse, found: Verification) -> None:
    """One alert per CRM, object and field whose acknowledged writes did not show; resolved when none."""
    findings = [
        Finding(
            key=f"{NOT_VISIBLE}:{crm}:{crm_object}:{crm_field}",
            severity="error",
            finding=NOT_VISIBLE,
            message=(
                f"{len(ids)} write(s) of {crm} {crm_object}.{crm_field} were acknowledged by the CRM but the "
                "next sync read another value (a workflow rewrote it, or the CRM ignored the field)"
            ),
            crm=crm,
            asset="outbound/deliveries",
            details={
                "field": crm_field,
                "object": crm_object,
                "records": len(ids),
                "example_ids": sorted(ids)[:5],
            },
        )
        for (crm, crm_object, crm_field), ids in sorted(found.not_visible.items())
    ]
    AlertBook(warehouse).report(f"{NOT_VISIBLE}:", findings)
