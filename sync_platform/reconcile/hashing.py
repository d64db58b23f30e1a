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

from sync_platform.core.sql import Fragment, ident, integer, join, quoted, sql

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


def epoch_ms_sql(column: Fragment, dialect: str = DUCKDB) -> Fragment:
    """SQL for a TIMESTAMP (naive = UTC) or TIMESTAMPTZ as UTC epoch milliseconds, floored, BIGINT."""
    if dialect == DUCKDB:
        us = sql("epoch_us({column})", column=column)
        return sql("(({us} - (({us} % 1000) + 1000) % 1000) // 1000)", us=us)
    return sql("CAST(floor(extract(epoch FROM {column}) * 1000) AS BIGINT)", column=column)


def _text_sql(column: Fragment, kind: str, dialect: str) -> Fragment:
    """SQL for one non-null value's canonical text."""
    text = Fragment("VARCHAR" if dialect == DUCKDB else "TEXT")
    if kind == STRING:
        return sql("CAST({column} AS {text})", column=column, text=text)
    if kind == BOOL:
        return sql("CASE WHEN {column} THEN 'true' ELSE 'false' END", column=column)
    if kind == INT:
        return sql("CAST({column} AS {text})", column=column, text=text)
    if kind == FLOAT:
        real = Fragment("DOUBLE" if dialect == DUCKDB else "DOUBLE PRECISION")
        x = sql("CAST({column} AS {real})", column=column, real=real)
        return sql(
            "CASE WHEN {x} = trunc({x}) AND abs({x}) < {exact} "
            "THEN CAST(CAST({x} AS BIGINT) AS {text}) ELSE CAST({x} AS {text}) END",
            x=x,
            exact=integer(_EXACT_FLOAT_INT),
            text=text,
        )
    if kind in (DATETIME, DATE):
        ts = sql("CAST({column} AS TIMESTAMP)", column=column) if kind == DATE else column
        return sql("CAST({ms} AS {text})", ms=epoch_ms_sql(ts, dialect), text=text)
    raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")


def canonical_sql(column: Fragment, kind: str, dialect: str = DUCKDB) -> Fragment:
    """SQL for one field's canonical encoding (``N`` or ``<n>:<text>``); ``column`` is a name from
    ``core.sql.quoted`` (or another Fragment)."""
    if dialect not in (DUCKDB, POSTGRES):
        raise ValueError(f"dialect must be {DUCKDB!r} or {POSTGRES!r}, got {dialect!r}")
    text = _text_sql(column, kind, dialect)
    size = Fragment("strlen" if dialect == DUCKDB else "octet_length")
    return sql(
        "(CASE WHEN {column} IS NULL THEN 'N' ELSE concat({size}({text}), ':', {text}) END)",
        column=column,
        size=size,
        text=text,
    )


def content_hash_sql(columns: Mapping[str, str], dialect: str = DUCKDB) -> Fragment:
    """SQL expression of the content hash of ``columns`` (name -> kind, in hashing order).

    Yields the same number as ``content_hash`` on a frame with those values: UBIGINT in DuckDB,
    BIGINT (always non-negative) in PostgreSQL. The names are validated and quoted
    (``core.sql.quoted``).
    """
    if not columns:
        raise ValueError("a content hash needs at least one field")
    parts = [canonical_sql(quoted(name), kind, dialect) for name, kind in columns.items()]
    text = parts[0] if len(parts) == 1 else sql("concat({parts})", parts=join(parts))
    mask = integer(_MASK_63)
    if dialect == DUCKDB:  # md5_number: the digest as a little-endian 128-bit integer
        return sql("CAST(md5_number({text}) & {mask} AS UBIGINT)", text=text, mask=mask)
    # the first 8 digest bytes in reverse (little-endian) order, as hex, to BIGINT
    hexed = join([sql("substr(h, {start}, 2)", start=integer(2 * i + 1)) for i in reversed(range(8))], " || ")
    return sql(
        "(SELECT CAST(CAST('x' || {hexed} AS BIT(64)) AS BIGINT) & {mask} "
        "FROM (SELECT md5({text}) AS h) AS m)",
        hexed=hexed,
        mask=mask,
        text=text,
    )


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
    view = frame.select(
        [
            (
                pl.col(f).dt.epoch("ms")
                if kinds[f"c{i}"] == DATETIME
                else pl.col(f).cast(pl.Datetime("ms")).dt.epoch("ms")
                if kinds[f"c{i}"] == DATE
                else pl.col(f)
            ).alias(f"c{i}")
            for i, f in enumerate(fields)
        ]
    )
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
        statement = sql(
            "SELECT {hash} AS {column} FROM frame", hash=content_hash_sql(kinds), column=ident(HASH_COLUMN)
        )
        table = conn.sql(statement).to_arrow_table()
    return pl.Series(HASH_COLUMN, table.column(0), dtype=pl.UInt64)


def canonical_values(frame: pl.DataFrame, fields: Sequence[str]) -> pl.DataFrame:
    """Each field's canonical text (the hash's input) as String columns named like ``fields``."""
    view, kinds = _positional(frame, fields)
    if view.height == 0:
        return pl.DataFrame(schema={f: pl.String for f in fields})
    select = join(
        [
            sql("{value} AS {name}", value=canonical_sql(quoted(c), kind), name=quoted(c))
            for c, kind in kinds.items()
        ]
    )
    with _duckdb() as conn:
        conn.register("frame", view)
        out = pl.from_arrow(conn.sql(sql("SELECT {select} FROM frame", select=select)).to_arrow_table())
    assert isinstance(out, pl.DataFrame)
    return out.rename({f"c{i}": f for i, f in enumerate(fields)}).cast(pl.String)
