"""Turn a page of CRM records into an Arrow table with stable, declared column types.

dlt loads Arrow tables without its row-by-row normalizer (dozens of times faster into DuckDB
than JSON items), but only if every page has the same schema: so every column is declared,
datetimes are parsed to UTC timestamps, and absent values are typed nulls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl
import pyarrow as pa

from sync_platform.core.errors import RejectedRecord

STRING, BOOL, INT, DATETIME = "string", "bool", "int", "datetime"
_POLARS = {STRING: pl.String, BOOL: pl.Boolean, INT: pl.Int64, DATETIME: pl.String}


def columns_hint(columns: Mapping[str, str], primary_key: str, cursor: str | None = None) -> dict[str, dict]:
    """dlt column hints for declared columns (types stay stable even for all-null pages).

    With ``cursor``, of two versions of one record in a load the one with the newer cursor is
    merged: a record changed (or deleted) while a run pages is read twice, and dlt otherwise
    keeps either version, often the older one.
    """
    dlt_types = {STRING: "text", BOOL: "bool", INT: "bigint", DATETIME: "timestamp"}
    hints = {
        name: {"data_type": dlt_types[kind], "nullable": name != primary_key}
        for name, kind in columns.items()
    }
    hints[primary_key]["primary_key"] = True
    if cursor is not None:
        hints[cursor]["dedup_sort"] = "desc"
    return hints


def parse_datetimes(expr: pl.Expr) -> pl.Expr:
    """Parse any of the CRMs' datetime spellings into a UTC timestamp (null stays null)."""
    text = expr.str.replace(r"\+0000$", "Z").str.replace(r"\+00:00$", "Z")
    return pl.coalesce(
        [
            text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_zone="UTC", strict=False, time_unit="us"),
            text.str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC", strict=False, time_unit="us"),
        ]
    )


class _Unconvertible(ValueError):
    def __init__(self, column: str, kind: str) -> None:
        super().__init__(f"{column}: not a valid {kind}")
        self.column = column


def to_arrow(
    rows: Sequence[Mapping],
    columns: Mapping[str, str],
    extra: Mapping[str, pl.Expr] | None = None,
    primary_key: str | None = None,
    rejects: list[RejectedRecord] | None = None,
) -> pa.Table:
    """Build the page's Arrow table: declared columns only, parsed datetimes, plus ``extra`` columns.

    A record without its primary key, or with a value that does not convert to its column's
    declared type, is left out and appended to ``rejects`` (one bad record must not fail the
    page, nor be loaded half-null); with ``rejects=None`` it raises ``ValueError`` instead.
    The primary key's field is marked non-nullable, matching its dlt hint (otherwise dlt warns
    on every page that the Arrow schema and the declared hints disagree).
    """
    schema = {name: _POLARS[kind] for name, kind in columns.items()}
    kept: list[Mapping] = []
    plain: list[dict] = []
    for row in rows:
        try:
            values = {name: _plain(row.get(name), name, columns[name]) for name in columns}
        except _Unconvertible as exc:
            _reject(rejects, row, primary_key, "parse", str(exc))
            continue
        if primary_key is not None and values.get(primary_key) is None:
            _reject(rejects, row, primary_key, "validation", f"{primary_key}: missing primary key")
            continue
        kept.append(row)
        plain.append(values)
    frame = pl.DataFrame(plain, schema=schema, orient="row") if plain else pl.DataFrame(schema=schema)
    dt_cols = [name for name, kind in columns.items() if kind == DATETIME]
    if dt_cols:
        frame = frame.with_columns([parse_datetimes(pl.col(c)).alias(f"__parsed_{c}") for c in dt_cols])
        bad = pl.any_horizontal(
            [pl.col(c).is_not_null() & pl.col(f"__parsed_{c}").is_null() for c in dt_cols]
        )
        flags = frame.select(bad.alias("bad"))["bad"]
        if flags.any():
            for index in flags.arg_true().to_list():
                column = next(
                    c
                    for c in dt_cols
                    if frame[c][index] is not None and frame[f"__parsed_{c}"][index] is None
                )
                _reject(rejects, kept[index], primary_key, "parse", f"{column}: not a valid {DATETIME}")
            frame = frame.filter(~flags)
        frame = frame.with_columns([pl.col(f"__parsed_{c}").alias(c) for c in dt_cols]).drop(
            [f"__parsed_{c}" for c in dt_cols]
        )
    if extra:
        frame = frame.with_columns([expr.alias(name) for name, expr in extra.items()])
    table = frame.to_arrow()
    if primary_key is not None:
        index = table.schema.get_field_index(primary_key)
        table = table.cast(table.schema.set(index, table.schema.field(index).with_nullable(False)))
    return table


def _reject(
    rejects: list[RejectedRecord] | None, row: Mapping, primary_key: str | None, kind: str, reason: str
) -> None:
    if rejects is None:
        raise ValueError(f"record cannot be loaded ({kind}): {reason}")
    record_id = row.get(primary_key) if primary_key else None
    rejects.append(RejectedRecord(str(record_id) if record_id not in (None, "") else None, kind, reason, row))


def _plain(value: object, column: str, kind: str) -> object:
    """Coerce CRM value spellings (HubSpot sends everything as strings) to the declared kind."""
    if value is None or value == "":
        return None
    if kind == BOOL:
        return _plain_bool(value, column)
    if kind == INT:
        return _plain_int(value, column)
    if kind in (STRING, DATETIME):
        return _plain_text(value, column, kind)
    return value


def _plain_bool(value: object, column: str) -> bool:
    """A bool, or ``"true"``/``"false"`` in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Unconvertible(column, BOOL)


def _plain_int(value: object, column: str) -> int:
    """An int (not a bool), a whole float, or a string that parses as an int."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise _Unconvertible(column, INT) from None
    raise _Unconvertible(column, INT)


def _plain_text(value: object, column: str, kind: str) -> str:
    """Strings as they are; other scalars as their ``str``; objects and lists are not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        raise _Unconvertible(column, kind)
    return str(value)
