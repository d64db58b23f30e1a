"""What a canonical run changed: the previous table against the new one, keyed by (source_system, source_id).

The audit log records, per entity and run, how many rows were inserted, updated and deleted and,
for the updated rows, how many changed in each column, with a few examples per column. Examples of
personal data carry a short hash of the old and new value, never the value: enough to see *that*
a field flipped (and to tell two changes apart), not what it says. The comparison is columnar
(one join, one null-aware inequality per column), so a million rows cost one pass.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import polars as pl

from sync_platform.canonical.model import ENTITIES
from sync_platform.security.redaction import PII_COLUMNS, pii_hash

KEY = ("source_system", "source_id")
SAMPLE_PER_FIELD = 3
MAX_SHOWN_CHARS = 80
_OLD, _NEW = "__in_previous", "__in_current"
LINEAGE = frozenset({"source_load_id"})  # which load wrote the raw row: bookkeeping, not content


def _compared(column: str) -> bool:
    return column not in KEY and column not in LINEAGE and not column.startswith("_dlt")


def pii_columns(entity: str | None = None, sensitive: Collection[str] = ()) -> frozenset[str]:
    """Columns whose values the audit log hashes: the model's PII, the redaction module's and extra ones
    (e.g. every mapping's ``sensitive`` fields)."""
    model = ENTITIES.get(entity) if entity else None
    declared = {f.name for f in model.fields if f.pii} if model else set()
    return frozenset(PII_COLUMNS | declared | set(sensitive))


@dataclass(frozen=True)
class ChangeSummary:
    """Row counts of one rebuild, and per column the rows whose value changed among the updated ones."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    quarantined: int = 0  # rows of the previous table now held back by the quality gate
    changed_fields: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    columns_added: tuple[str, ...] = ()
    columns_removed: tuple[str, ...] = ()

    def details(self) -> dict[str, Any]:
        """The part of the audit entry's ``details`` this comparison contributes."""
        out: dict[str, Any] = {
            "unchanged": self.unchanged,
            "quarantined_from_previous": self.quarantined,
            "by_source": self.by_source,
            "change_samples": self.samples,
        }
        if self.columns_added or self.columns_removed:
            out["columns_added"], out["columns_removed"] = (
                list(self.columns_added),
                list(self.columns_removed),
            )
        return out


def summarize_changes(
    previous: pl.DataFrame | None,
    current: pl.DataFrame,
    pii: Collection[str] = PII_COLUMNS,
    rejected: pl.DataFrame | None = None,
    sample_per_field: int = SAMPLE_PER_FIELD,
) -> ChangeSummary:
    """Compare the previous canonical table with the one about to replace it.

    - inserted: keys only in ``current``; deleted: rows whose ``deleted_at`` became set, plus keys gone
      from the table that the quality gate did not reject (``rejected`` keys count as quarantined);
    - updated: keys in both, not newly deleted, with at least one compared column different
      (null-aware); ``changed_fields`` counts those rows per column, and ``samples`` shows a few per
      column, hashed for the ``pii`` columns.
    Columns starting with ``_dlt`` and ``source_load_id`` (load bookkeeping) are not compared.
    """
    if previous is None or previous.is_empty() or not set(KEY) <= set(previous.columns):
        return ChangeSummary(inserted=current.height, by_source=_by_source(current, "inserted"))
    compared = [c for c in current.columns if c in previous.columns and _compared(c)]
    own = [c for c in current.columns if _compared(c)]
    gone = [c for c in previous.columns if _compared(c) and c not in current.columns]
    old = previous.select(
        *KEY, *(pl.col(c).cast(current.schema[c], strict=False).alias(f"{c}__old") for c in compared)
    ).with_columns(pl.lit(True).alias(_OLD))
    new = current.select(*KEY, *compared).with_columns(pl.lit(True).alias(_NEW))
    joined = new.join(old, on=list(KEY), how="full", coalesce=True)
    in_old, in_new = pl.col(_OLD).fill_null(False), pl.col(_NEW).fill_null(False)
    newly_deleted = (
        (pl.col("deleted_at").is_not_null() & pl.col("deleted_at__old").is_null())
        if "deleted_at" in compared
        else pl.lit(False)
    )
    flags = [pl.col(c).ne_missing(pl.col(f"{c}__old")).alias(c) for c in compared]
    status = joined.with_columns(
        pl.when(in_new & ~in_old)
        .then(pl.lit("inserted"))
        .when(in_old & ~in_new)
        .then(pl.lit("removed"))
        .when(newly_deleted)
        .then(pl.lit("deleted"))
        .when(pl.any_horizontal(flags) if flags else pl.lit(False))
        .then(pl.lit("updated"))
        .otherwise(pl.lit("unchanged"))
        .alias("__status")
    )
    if rejected is not None and rejected.height:
        held = rejected.select(KEY).unique().with_columns(pl.lit(True).alias("__rejected"))
        status = status.join(held, on=list(KEY), how="left").with_columns(
            pl.when((pl.col("__status") == "removed") & pl.col("__rejected").fill_null(False))
            .then(pl.lit("quarantined"))
            .otherwise(pl.col("__status"))
            .alias("__status")
        )
    status = status.with_columns(pl.col("__status").replace({"removed": "deleted"}))
    counts = dict(status.group_by("__status").len().iter_rows())
    updated = status.filter(pl.col("__status") == "updated")
    changed = updated.select(f.cast(pl.UInt32).sum() for f in flags) if flags else pl.DataFrame()
    changed_fields = {c: int(changed[c][0]) for c in compared if changed.height and changed[c][0]}
    samples = {c: _samples(updated, c, c in pii, sample_per_field) for c in changed_fields}
    by_source = status.filter(pl.col("__status") != "unchanged").group_by("source_system", "__status").len()
    return ChangeSummary(
        inserted=counts.get("inserted", 0),
        updated=counts.get("updated", 0),
        deleted=counts.get("deleted", 0),
        unchanged=counts.get("unchanged", 0),
        quarantined=counts.get("quarantined", 0),
        changed_fields=changed_fields,
        samples=samples,
        by_source=_nest(by_source),
        columns_added=tuple(c for c in own if c not in previous.columns),
        columns_removed=tuple(gone),
    )


def _samples(updated: pl.DataFrame, column: str, is_pii: bool, limit: int) -> list[dict[str, Any]]:
    """A few changes of one column (lowest keys first, so a re-run shows the same ones)."""
    rows = (
        updated.filter(pl.col(column).ne_missing(pl.col(f"{column}__old")))
        .sort(list(KEY))
        .head(limit)
        .select(*KEY, pl.col(f"{column}__old").alias("old"), pl.col(column).alias("new"))
    )
    show = pii_hash if is_pii else _shown
    return [
        {
            "source_system": r["source_system"],
            "source_id": r["source_id"],
            "old": show(r["old"]),
            "new": show(r["new"]),
        }
        for r in rows.iter_rows(named=True)
    ]


def _shown(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = _text(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "…"


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def _by_source(frame: pl.DataFrame, status: str) -> dict[str, dict[str, int]]:
    if frame.is_empty() or "source_system" not in frame.columns:
        return {}
    return _nest(frame.group_by("source_system").len().with_columns(pl.lit(status).alias("__status")))


def _nest(counts: pl.DataFrame) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row in counts.sort("source_system", "__status").iter_rows(named=True):
        out.setdefault(row["source_system"], {})[row["__status"]] = int(row["len"])
    return out
