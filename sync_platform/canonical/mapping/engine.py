"""Apply a mapping to a raw table: one vectorized polars query per entity, no code per CRM.

Each canonical field is read as: source column -> ``type`` cast (``format`` parses datetimes) ->
``normalize`` -> ``values`` -> the canonical type. A source value that is present but does not
survive that (an unparseable date, a phone that is not a number, a value the map lacks) becomes
null and is reported in :attr:`MappedResult.conversion_failures`; ``default`` only fills values that
were absent at the source, so it never hides a failed conversion. Raw columns the mapping does not
read are ignored and counted: a new CRM custom field never breaks a sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from sync_platform.canonical.mapping.loader import EPOCH_FORMATS, FieldMapping, Mapping, MappingError
from sync_platform.canonical.mapping.normalizers import BLANK_NULLING, NORMALIZERS
from sync_platform.canonical.model import ENTITIES, Field
from sync_platform.ingest.raw_schema import DLT_SYSTEM_COLUMNS, LOAD_ID

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_UTC = pl.Datetime("us", "UTC")

FAILURE_SCHEMA = {
    "source_system": pl.String,
    "source_id": pl.String,
    "field": pl.String,
    "source_column": pl.String,
    "raw_value": pl.String,
    "problem": pl.String,
}


@dataclass(frozen=True)
class MappedResult:
    """The canonical frame of one CRM's entity, and what the mapping left behind."""

    entity: str
    source_system: str
    mapping_version: int
    frame: pl.DataFrame
    ignored_columns: tuple[str, ...]  # raw columns the mapping does not read
    conversion_failures: pl.DataFrame  # one row per (record, field) whose present value did not convert

    @property
    def ignored_count(self) -> int:
        return len(self.ignored_columns)

    def failure_counts(self) -> dict[str, int]:
        """Failed conversions per canonical field, for run metadata."""
        counts = self.conversion_failures.group_by("field").len()
        return dict(zip(counts["field"].to_list(), counts["len"].to_list(), strict=True))


@dataclass(frozen=True)
class ValueMapGap:
    """Source values a value map lacks, with their row counts (a data-time mapping error)."""

    file: str
    key: str
    source_column: str
    values: dict[str, int]

    @property
    def problem(self) -> str:
        shown = ", ".join(f"{v!r} ({n} rows)" for v, n in list(self.values.items())[:10])
        more = f" and {len(self.values) - 10} more" if len(self.values) > 10 else ""
        return f"value map lacks values found in column {self.source_column!r}: {shown}{more}"


def apply_mapping(mapping: Mapping, entity: str, raw: pl.DataFrame | pl.LazyFrame) -> MappedResult:
    """Map one raw table to the canonical ``entity``; raises :class:`MappingError` if a column is missing."""
    spec = mapping.entity(entity)
    model = ENTITIES[entity]
    lazy = raw.lazy()
    schema = lazy.collect_schema()
    _require_columns(mapping, entity, schema)
    converted, flags = [], []
    for field in model.fields:
        field_spec = spec.fields.get(field.name)
        if field_spec is None or field_spec.source is None:
            continue
        at = f"entities.{entity}.fields.{field.name}"
        source_dtype = schema[field_spec.source]
        converted.append(_convert(field, field_spec, source_dtype, mapping, at).alias(field.name))
        if _can_fail(field, field_spec, source_dtype):
            flags += [
                _present(pl.col(field_spec.source), source_dtype).alias(f"__present_{field.name}"),
                pl.col(field_spec.source).alias(f"__raw_{field.name}"),
            ]
    keyed = lazy.select(
        pl.lit(mapping.crm, pl.String).alias("source_system"),
        pl.col(spec.source_id).cast(pl.String).alias("source_id"),
        _to_utc(pl.col(spec.deleted_at), schema[spec.deleted_at]).alias("deleted_at"),
        *converted,
        *flags,
        (pl.col(LOAD_ID) if LOAD_ID in schema else pl.lit(None)).cast(pl.String).alias("source_load_id"),
    ).collect(engine="in-memory")  # one pass over an in-memory table: faster than streaming morsels
    failures = _failures(keyed, spec.fields, model.field_names)
    frame = keyed.select(
        *(_final(f, spec.fields.get(f.name), keyed.columns).alias(f.name) for f in model.fields),
        "source_system",
        "source_id",
        "deleted_at",
        pl.lit(mapping.version, pl.Int64).alias("mapping_version"),
        "source_load_id",
    ).select(model.columns)
    ignored = sorted(set(schema.names()) - spec.source_columns - DLT_SYSTEM_COLUMNS)
    return MappedResult(entity, mapping.crm, mapping.version, frame, tuple(ignored), failures)


def check_value_maps(
    mapping: Mapping, entity: str, raw: pl.DataFrame | pl.LazyFrame, *, strict: bool = False
) -> list[ValueMapGap]:
    """Source values that appear in ``raw`` but not in a value map (fields with ``unmapped:`` accept any).

    Run it before mapping: with ``strict`` it raises a :class:`MappingError` naming file and key.
    """
    spec = mapping.entity(entity)
    lazy = raw.lazy()
    schema = lazy.collect_schema()
    _require_columns(mapping, entity, schema)
    gaps = []
    for name, field_spec in spec.fields.items():
        if field_spec.values is None or field_spec.unmapped is not None or field_spec.source is None:
            continue
        at = f"entities.{entity}.fields.{name}.values"
        text = _read(field_spec, schema[field_spec.source], mapping, at).cast(pl.String)
        found = (
            lazy.select(text.alias("value"))
            .drop_nulls()
            .filter(~pl.col("value").is_in(list(field_spec.values)))
            .group_by("value")
            .len()
            .sort("len", "value", descending=[True, False])
            .collect()
        )
        if found.height:
            gaps.append(
                ValueMapGap(
                    mapping.file,
                    at,
                    field_spec.source,
                    dict(zip(found["value"].to_list(), found["len"].to_list(), strict=True)),
                )
            )
    if strict and gaps:
        raise MappingError(mapping.file, [(gap.key, gap.problem) for gap in gaps])
    return gaps


def _require_columns(mapping: Mapping, entity: str, schema: pl.Schema) -> None:
    spec = mapping.entity(entity)
    at = f"entities.{entity}"
    wanted = [(f"{at}.source_id", spec.source_id), (f"{at}.deleted_at", spec.deleted_at)]
    wanted += [(f"{at}.fields.{n}.source", f.source) for n, f in spec.fields.items() if f.source]
    missing = [
        (key, f"column {column!r} is not in the raw {spec.table} table")
        for key, column in wanted
        if column not in schema
    ]
    if missing:
        raise MappingError(mapping.file, missing)


def _present(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A value the source actually holds: not null, and for text not blank."""
    if dtype == pl.String:
        return column.is_not_null() & (column.str.strip_chars().str.len_chars() > 0)
    return column.is_not_null()


def _read(spec: FieldMapping, dtype: pl.DataType, mapping: Mapping, at: str) -> pl.Expr:
    """The source column after the ``type`` cast and the normalizer: the value a value map looks up."""
    expr = pl.col(spec.source)
    if spec.type is not None or spec.format is not None:
        expr, dtype = _cast(expr, dtype, spec.type or "datetime", spec.format, mapping, at)
    if spec.normalize is not None:
        text = expr if dtype == pl.String else expr.cast(pl.String)
        expr = NORMALIZERS[spec.normalize](text, mapping.phone_region)
    return expr


def _convert(field: Field, spec: FieldMapping, dtype: pl.DataType, mapping: Mapping, at: str) -> pl.Expr:
    expr = _read(spec, dtype, mapping, at)
    if spec.normalize is not None:
        dtype = pl.String()
    elif spec.type is not None or spec.format is not None:
        dtype = _CAST_TYPES[spec.type or "datetime"]
    if spec.values is not None:
        return expr.cast(pl.String).replace_strict(
            spec.values, default=spec.unmapped, return_dtype=field.dtype
        )
    return _to_canonical(expr, dtype, field, mapping, at)


_CAST_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "datetime": _UTC,
}


def _cast(
    expr: pl.Expr, dtype: pl.DataType, to: str, fmt: str | None, mapping: Mapping, at: str
) -> tuple[pl.Expr, pl.DataType]:
    if to == "datetime":
        return _parse_datetime(expr, dtype, fmt, mapping, at), _UTC
    if to == "boolean":
        return _parse_boolean(expr, dtype), pl.Boolean()
    return expr.cast(_CAST_TYPES[to], strict=False), _CAST_TYPES[to]


def _to_canonical(expr: pl.Expr, dtype: pl.DataType, field: Field, mapping: Mapping, at: str) -> pl.Expr:
    if field.type == "string":
        return expr if dtype == pl.String else expr.cast(pl.String)
    if field.type == "boolean":
        return _parse_boolean(expr, dtype)
    return _parse_datetime(expr, dtype, None, mapping, at)


def _parse_boolean(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Boolean:
        return expr
    if dtype.is_numeric():
        return expr != 0
    words = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}
    return (
        expr.cast(pl.String)
        .str.strip_chars()
        .str.to_lowercase()
        .replace_strict(words, default=None, return_dtype=pl.Boolean)
    )


def _parse_datetime(expr: pl.Expr, dtype: pl.DataType, fmt: str | None, mapping: Mapping, at: str) -> pl.Expr:
    if isinstance(dtype, pl.Datetime | pl.Date):
        return _to_utc(expr, dtype)
    if dtype.is_integer() or fmt in EPOCH_FORMATS:
        if fmt not in EPOCH_FORMATS:
            raise MappingError(
                mapping.file,
                [
                    (
                        at,
                        f"an integer column becomes a datetime only with "
                        f"format: {' or '.join(EPOCH_FORMATS)}",
                    )
                ],
            )
        unit = "ms" if fmt == "epoch_ms" else "s"
        return (
            pl.from_epoch(expr.cast(pl.Int64, strict=False), time_unit=unit)
            .dt.replace_time_zone("UTC")
            .dt.cast_time_unit("us")
        )
    if dtype == pl.String:
        return expr.str.strip_chars().str.to_datetime(fmt, time_unit="us", time_zone="UTC", strict=False)
    raise MappingError(mapping.file, [(at, f"a {dtype} column cannot become a datetime")])


def _to_utc(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Date):
        return expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if isinstance(dtype, pl.Datetime):
        aware = expr.dt.convert_time_zone("UTC") if dtype.time_zone else expr.dt.replace_time_zone("UTC")
        return aware.dt.cast_time_unit("us")
    if isinstance(dtype, pl.Null):
        return pl.lit(None, _UTC)
    return expr.cast(_UTC)


def _final(field: Field, spec: FieldMapping | None, columns: list[str]) -> pl.Expr:
    """The converted value where the source held one, else the default."""
    default = _default(field, spec)
    if field.name not in columns:
        return default
    if f"__present_{field.name}" not in columns:  # null exactly where the source is absent
        return (
            pl.col(field.name).fill_null(default)
            if spec is not None and spec.default is not None
            else pl.col(field.name)
        )
    return pl.when(pl.col(f"__present_{field.name}")).then(pl.col(field.name)).otherwise(default)


def _can_fail(field: Field, spec: FieldMapping, dtype: pl.DataType) -> bool:
    """Whether a present source value may come out null: only then are presence and raw value kept.

    Blank-nulling normalizers (email, name, trim...) and same-kind non-text reads cannot fail, and
    their result is null exactly where the source is absent, so they skip that bookkeeping.
    """
    if spec.type is not None or spec.format is not None or spec.values is not None:
        return True
    if spec.normalize is not None:
        return spec.normalize not in BLANK_NULLING
    same_kind = dtype == field.dtype or (isinstance(dtype, pl.Datetime) and field.type == "datetime")
    return dtype == pl.String or not same_kind


def _default(field: Field, spec: FieldMapping | None) -> pl.Expr:
    """The field's default as a typed literal (null without one): fills rows whose source is absent."""
    value = spec.default if spec is not None else None
    if isinstance(value, str) and field.type == "datetime":
        return pl.lit(datetime.fromisoformat(value), _UTC)
    return pl.lit(value, field.dtype)


def _failures(keyed: pl.DataFrame, specs: dict[str, FieldMapping], order: tuple[str, ...]) -> pl.DataFrame:
    """One row per (record, field) whose present source value did not convert."""
    names = [name for name in order if f"__present_{name}" in keyed.columns]
    failed = {name: pl.col(f"__present_{name}") & pl.col(name).is_null() for name in names}
    if not names:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    suspects = keyed.lazy().filter(pl.any_horizontal(list(failed.values()))).collect()  # usually a handful
    parts = [pl.DataFrame(schema=FAILURE_SCHEMA)]
    for name in names:
        spec = specs[name]
        problem = (
            "invalid_phone"
            if spec.normalize == "phone_e164"
            else "unmapped_value"
            if spec.values is not None
            else "conversion_failed"
        )
        parts.append(
            suspects.filter(failed[name]).select(
                "source_system",
                "source_id",
                pl.lit(name).alias("field"),
                pl.lit(spec.source).alias("source_column"),
                pl.col(f"__raw_{name}").cast(pl.String).alias("raw_value"),
                pl.lit(problem).alias("problem"),
            )
        )
    return pl.concat(parts)
