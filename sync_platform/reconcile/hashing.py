"""Content hashes of records that agree whether a row came from a CRM listing or from the warehouse.

A listing page (``sources/arrow.py:to_arrow``) and the same record read back from DuckDB or
PostgreSQL differ in ways that are not content: datetime precision and time zone, integer width,
an integral float for an int, column order. Each value is therefore written in one canonical text
before hashing:

- null -> ``N`` (a null is not an empty string);
- any other value -> ``<n>:<text>`` where ``n`` is the number of UTF-8 bytes of ``text``
  (a length prefix, so no separator can be forged by a value);
- ``text`` is the string itself; ``true``/``false``; an integer in decimal; a float that holds an
  integer as that integer, other floats in shortest round-trip form; a datetime (naive = UTC, any
  precision or zone) or a date as UTC epoch milliseconds, floored.

The record's text is its fields' texts concatenated in the order of ``fields`` (callers pass the
two sides' columns in corresponding order: listing and warehouse may spell names differently).
The hash is the first 8 bytes of the text's MD5 read as a little-endian integer, top bit cleared
(MD5 is RFC 1321: the same in every version of every engine, and built into DuckDB and
PostgreSQL), so the warehouse side can also be hashed inside the warehouse (``content_hash_sql``)
and fits a signed BIGINT there. In Python: ``int.from_bytes(md5(text).digest()[:8], "little") &
(2**63 - 1)``. It is computed by running
that very SQL in an in-memory DuckDB over the frame (Arrow, zero copy), so the in-process and the
in-warehouse hash cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb
import polars as pl

STRING, BOOL, INT, FLOAT, DATETIME, DATE = "string", "bool", "int", "float", "datetime", "date"
KINDS = (STRING, BOOL, INT, FLOAT, DATETIME, DATE)
DUCKDB, POSTGRES = "duckdb", "postgres"
HASH_COLUMN = "content_hash"
_MASK_63 = 0x7FFF_FFFF_FFFF_FFFF
_EXACT_FLOAT_INT = 2**53  # beyond this a float's integer part is no longer exact


def kind_of(dtype: pl.DataType) -> str:
    """The canonical kind of a polars dtype (what ``content_hash`` normalises it as)."""
    if dtype == pl.Boolean:
        return BOOL
    if dtype.is_integer():
        return INT
    if dtype.is_float() or isinstance(dtype, pl.Decimal):
        return FLOAT
    if isinstance(dtype, pl.Datetime):
        return DATETIME
    if dtype == pl.Date:
        return DATE
    if dtype in (pl.String, pl.Categorical, pl.Null) or isinstance(dtype, pl.Enum):
        return STRING
    raise TypeError(f"content_hash cannot normalise a column of type {dtype}")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def epoch_ms_sql(column: str, dialect: str = DUCKDB) -> str:
    """SQL for a TIMESTAMP (naive = UTC) or TIMESTAMPTZ as UTC epoch milliseconds, floored, BIGINT."""
    if dialect == DUCKDB:
        us = f"epoch_us({column})"
        return f"(({us} - (({us} % 1000) + 1000) % 1000) // 1000)"
    return f"CAST(floor(extract(epoch FROM {column}) * 1000) AS BIGINT)"


def _text_sql(column: str, kind: str, dialect: str) -> str:
    """SQL for one non-null value's canonical text."""
    text = "VARCHAR" if dialect == DUCKDB else "TEXT"
    if kind == STRING:
        return f"CAST({column} AS {text})"
    if kind == BOOL:
        return f"CASE WHEN {column} THEN 'true' ELSE 'false' END"
    if kind == INT:
        return f"CAST({column} AS {text})"
    if kind == FLOAT:
        real = "DOUBLE" if dialect == DUCKDB else "DOUBLE PRECISION"
        x = f"CAST({column} AS {real})"
        return (f"CASE WHEN {x} = trunc({x}) AND abs({x}) < {_EXACT_FLOAT_INT} "
                f"THEN CAST(CAST({x} AS BIGINT) AS {text}) ELSE CAST({x} AS {text}) END")
    if kind in (DATETIME, DATE):
        ts = f"CAST({column} AS TIMESTAMP)" if kind == DATE else column
        return f"CAST({epoch_ms_sql(ts, dialect)} AS {text})"
    raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")


def canonical_sql(column: str, kind: str, dialect: str = DUCKDB) -> str:
    """SQL for one field's canonical encoding (``N`` or ``<n>:<text>``); ``column`` is already quoted."""
    if dialect not in (DUCKDB, POSTGRES):
        raise ValueError(f"dialect must be {DUCKDB!r} or {POSTGRES!r}, got {dialect!r}")
    text = _text_sql(column, kind, dialect)
    size = "strlen" if dialect == DUCKDB else "octet_length"
    return f"(CASE WHEN {column} IS NULL THEN 'N' ELSE concat({size}({text}), ':', {text}) END)"


def content_hash_sql(columns: Mapping[str, str], dialect: str = DUCKDB) -> str:
    """SQL expression of the content hash of ``columns`` (name -> kind, in hashing order).

    Yields the same number as ``content_hash`` on a frame with those values: UBIGINT in DuckDB,
    BIGINT (always non-negative) in PostgreSQL.
    """
    if not columns:
        raise ValueError("a content hash needs at least one field")
    parts = [canonical_sql(quote(name), kind, dialect) for name, kind in columns.items()]
    text = parts[0] if len(parts) == 1 else f"concat({', '.join(parts)})"
    if dialect == DUCKDB:  # md5_number: the digest as a little-endian 128-bit integer
        return f"CAST(md5_number({text}) & {_MASK_63} AS UBIGINT)"
    # the first 8 digest bytes in reverse (little-endian) order, as hex, to BIGINT
    hexed = " || ".join(f"substr(h, {2 * i + 1}, 2)" for i in reversed(range(8)))
    return f"(SELECT CAST(CAST('x' || {hexed} AS BIT(64)) AS BIGINT) & {_MASK_63} FROM (SELECT md5({text}) AS h) AS m)"


def _positional(frame: pl.DataFrame, fields: Sequence[str]) -> tuple[pl.DataFrame, dict[str, str]]:
    """The fields as columns c0..cN (so any field name is safe in SQL) and their kinds."""
    if not fields:
        raise ValueError("a content hash needs at least one field")
    if len(set(fields)) != len(fields):
        raise ValueError(f"fields repeat a name: {list(fields)}")
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise KeyError(f"fields not in the frame: {missing}")
    kinds = {f"c{i}": kind_of(frame.schema[f]) for i, f in enumerate(fields)}
    # datetimes become epoch milliseconds here (floored, any unit or zone): the same text as the SQL's
    # datetime encoding, without DuckDB's per-precision timestamp types
    view = frame.select([
        (pl.col(f).dt.epoch("ms") if kinds[f"c{i}"] == DATETIME
         else pl.col(f).cast(pl.Datetime("ms")).dt.epoch("ms") if kinds[f"c{i}"] == DATE
         else pl.col(f)).alias(f"c{i}") for i, f in enumerate(fields)])
    return view, {c: INT if kind in (DATETIME, DATE) else kind for c, kind in kinds.items()}


def _duckdb() -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def content_hash(frame: pl.DataFrame, fields: Sequence[str]) -> pl.Series:
    """UInt64 content hash of ``fields`` per row (see the module docstring for what is normalised)."""
    view, kinds = _positional(frame, fields)
    if view.height == 0:
        return pl.Series(HASH_COLUMN, [], dtype=pl.UInt64)
    with _duckdb() as conn:
        conn.register("frame", view)
        table = conn.sql(f"SELECT {content_hash_sql(kinds)} AS {HASH_COLUMN} FROM frame").to_arrow_table()
    return pl.Series(HASH_COLUMN, table.column(0), dtype=pl.UInt64)


def canonical_values(frame: pl.DataFrame, fields: Sequence[str]) -> pl.DataFrame:
    """Each field's canonical text (the hash's input) as String columns named like ``fields``."""
    view, kinds = _positional(frame, fields)
    if view.height == 0:
        return pl.DataFrame(schema={f: pl.String for f in fields})
    select = ", ".join(f"{canonical_sql(quote(c), kind)} AS {quote(c)}" for c, kind in kinds.items())
    with _duckdb() as conn:
        conn.register("frame", view)
        out = pl.from_arrow(conn.sql(f"SELECT {select} FROM frame").to_arrow_table())
    assert isinstance(out, pl.DataFrame)
    return out.rename({f"c{i}": f for i, f in enumerate(fields)}).cast(pl.String)
