"""Validate a canonical table once, and split it into good rows and rejected rows with their reasons.

pandera runs lazily over the whole table (a call costs ~14 ms of overhead: never per row or per
chunk) and its failure cases become data: one row per (record, rule) with the column and the
offending value, ready for a quarantine table or asset-check metadata. A failure pandera cannot
pin to a row (a missing column, a wrong dtype) rejects the whole table: nothing passes unjudged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from sync_platform.canonical.model import ENTITIES
from sync_platform.canonical.quality.models import DATAFRAME_CHECK_COLUMNS, MODELS, TombstoneModel

FAILURE_SCHEMA = {
    "source_system": pl.String,
    "source_id": pl.String,
    "rule": pl.String,
    "column": pl.String,
    "value": pl.String,
}
TABLE_FAILURE_SCHEMA = {"rule": pl.String, "column": pl.String, "detail": pl.String}
_ROW = "__row"
_CASE_SCHEMA = {_ROW: pl.UInt32, "rule": pl.String, "column": pl.String, "value": pl.String}
_KEY = ["source_system", "source_id"]


@dataclass(frozen=True)
class ValidationOutcome:
    """Good rows, rejected rows, and why: ``failures`` has one row per (record, broken rule)."""

    entity: str
    good: pl.DataFrame
    rejected: pl.DataFrame
    failures: pl.DataFrame  # source_system, source_id, rule, column, value
    table_failures: pl.DataFrame  # rule, column, detail: failures of the table as a whole

    @property
    def rows(self) -> int:
        return self.good.height + self.rejected.height

    @property
    def rejected_share(self) -> float:
        return self.rejected.height / self.rows if self.rows else 0.0

    def rule_counts(self) -> dict[str, int]:
        """Rejected records per rule (a record breaking two rules counts under both)."""
        counts = self.failures.unique([*_KEY, "rule"]).group_by("rule").len().sort("rule")
        return dict(zip(counts["rule"].to_list(), counts["len"].to_list(), strict=True))

    def with_failures(self, failures: pl.DataFrame) -> ValidationOutcome:
        """Reject more rows (e.g. :func:`referential_failures`), moving them from good to rejected by key."""
        if failures.is_empty():
            return self
        keys = failures.select(_KEY).unique()
        moved = self.good.join(keys, on=_KEY, how="semi", nulls_equal=True)
        return ValidationOutcome(
            entity=self.entity,
            good=self.good.join(keys, on=_KEY, how="anti", nulls_equal=True),
            rejected=pl.concat([self.rejected, moved]),
            failures=pl.concat([self.failures, failures.select(list(FAILURE_SCHEMA))]),
            table_failures=self.table_failures,
        )


def validate_entity(
    entity: str, frame: pl.DataFrame, required: Mapping[str, Sequence[str]] | None = None
) -> ValidationOutcome:
    """Judge a canonical table: the entity's model on live rows, the key rules on deleted ones.

    ``required`` adds per-CRM required fields (``Mapping.required_fields``), keyed by source_system.
    """
    indexed = frame.with_row_index(_ROW)
    has_deleted = "deleted_at" in frame.columns and frame["deleted_at"].null_count() < frame.height
    deleted = pl.col("deleted_at").is_not_null()
    live, dead = (
        (indexed.filter(~deleted), indexed.filter(deleted)) if has_deleted else (indexed, indexed.clear())
    )
    cases = [_failure_cases(MODELS[entity], live)]
    if dead.height:
        cases.append(_failure_cases(TombstoneModel, dead))
    row_cases = pl.concat(
        [c.filter(pl.col(_ROW).is_not_null()) for c in cases] + [_required_failures(entity, live, required)]
    )
    table_cases = pl.concat([c.filter(pl.col(_ROW).is_null()) for c in cases])
    failures = _with_values(row_cases, indexed)
    if table_cases.height:
        is_rejected = pl.lit(True)
    else:
        is_rejected = pl.col(_ROW).is_in(failures[_ROW].unique().implode())
    return ValidationOutcome(
        entity=entity,
        good=indexed.filter(~is_rejected).drop(_ROW),
        rejected=indexed.filter(is_rejected).drop(_ROW),
        failures=failures.select(list(FAILURE_SCHEMA)),
        table_failures=table_cases.select(pl.col("rule"), pl.col("column"), pl.col("value").alias("detail")),
    )


def referential_failures(
    child: pl.DataFrame,
    parent: pl.DataFrame,
    column: str,
    *,
    rule: str | None = None,
    parent_column: str = "source_id",
    allow_deleted_parents: bool = False,
) -> pl.DataFrame:
    """Live child rows whose ``column`` names no parent of the same source_system (null links are fine).

    A link to a soft-deleted parent dangles unless ``allow_deleted_parents``. Returns failures in the
    :attr:`ValidationOutcome.failures` layout, for :meth:`ValidationOutcome.with_failures`.
    """
    parents = (
        parent
        if allow_deleted_parents or "deleted_at" not in parent.columns
        else parent.filter(pl.col("deleted_at").is_null())
    )
    children = child.filter(pl.col(column).is_not_null())
    if "deleted_at" in child.columns:
        children = children.filter(pl.col("deleted_at").is_null())
    dangling = children.join(
        parents.select("source_system", pl.col(parent_column).alias(column)).unique(),
        on=["source_system", column],
        how="anti",
    )
    return dangling.select(
        "source_system",
        "source_id",
        pl.lit(rule or f"{column}_exists").alias("rule"),
        pl.lit(column).alias("column"),
        pl.col(column).cast(pl.String).alias("value"),
    )


def _failure_cases(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> pl.DataFrame:
    """pandera's failure cases as (row, rule, column, value); row is null for table-wide failures."""
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return pl.DataFrame(schema=_CASE_SCHEMA)
    positions = frame.select(pl.int_range(pl.len(), dtype=pl.Int32).alias("index"), _ROW)
    column = (
        pl.when(pl.col("check") == "column_in_dataframe")
        .then(pl.col("failure_case"))
        .when(pl.col("schema_context") == "DataFrameSchema")
        .then(pl.col("check").replace_strict(DATAFRAME_CHECK_COLUMNS, default=None))
        .otherwise(pl.col("column"))
    )
    return cases.join(positions, on="index", how="left").select(
        _ROW,
        pl.col("check").alias("rule"),
        column.alias("column"),
        pl.col("failure_case").cast(pl.String).alias("value"),
    )


def _required_failures(
    entity: str, live: pl.DataFrame, required: Mapping[str, Sequence[str]] | None
) -> pl.DataFrame:
    """Null fields a CRM's mapping requires beyond the model (the model's own are pandera's)."""
    parts = [pl.DataFrame(schema=_CASE_SCHEMA)]
    model_required = {f.name for f in ENTITIES[entity].fields if f.required}
    for system, fields in (required or {}).items():
        for field in (f for f in fields if f not in model_required):
            missing = live.filter((pl.col("source_system") == system) & pl.col(field).is_null())
            parts.append(
                missing.select(
                    _ROW,
                    pl.lit("required_by_mapping").alias("rule"),
                    pl.lit(field).alias("column"),
                    pl.lit(None, pl.String).alias("value"),
                )
            )
    return pl.concat(parts)


def _with_values(cases: pl.DataFrame, indexed: pl.DataFrame) -> pl.DataFrame:
    """Attach each failure's record key, and the offending value read from the row itself."""
    failing = indexed.filter(pl.col(_ROW).is_in(cases[_ROW].unique().implode()))
    columns = [c for c in cases["column"].drop_nulls().unique().to_list() if c in failing.columns]
    values = (
        failing.select(_ROW, *(pl.col(c).cast(pl.String) for c in columns)).unpivot(
            index=_ROW, variable_name="column", value_name="row_value"
        )
        if columns
        else None
    )
    keyed = cases.join(failing.select(_ROW, *_KEY), on=_ROW, how="left")
    if values is None:
        return keyed
    in_row = pl.col("column").is_in(columns)
    return (
        keyed.join(values, on=[_ROW, "column"], how="left")
        .with_columns(pl.when(in_row).then("row_value").otherwise("value").alias("value"))
        .drop("row_value")
    )
