"""content_hash: equal values hash equal whichever way they travelled; different values do not."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import duckdb
import polars as pl
import pytest

from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.sources.arrow import BOOL, DATETIME, INT, STRING, to_arrow
from sync_platform.reconcile import canonical_values, content_hash, content_hash_sql

COLUMNS = {
    "Id": STRING,
    "FirstName": STRING,
    "Email": STRING,
    "HasOptedOutOfEmail": BOOL,
    "NumberOfEmployees": INT,
    "SystemModstamp": DATETIME,
}
FIELDS = ["FirstName", "Email", "HasOptedOutOfEmail", "NumberOfEmployees", "SystemModstamp"]
# as a CRM sends them: HubSpot-style strings for bools and ints, two datetime spellings, blanks
PAGE = [
    {
        "Id": "003A",
        "FirstName": "Zoë",
        "Email": "zoe@example.com",
        "HasOptedOutOfEmail": "true",
        "NumberOfEmployees": "42",
        "SystemModstamp": "2025-03-01T12:00:00.123+0000",
    },
    {
        "Id": "003B",
        "FirstName": "Bob",
        "Email": "",
        "HasOptedOutOfEmail": False,
        "NumberOfEmployees": None,
        "SystemModstamp": "2025-03-01T12:00:01Z",
    },
    {
        "Id": "003C",
        "FirstName": None,
        "Email": None,
        "HasOptedOutOfEmail": None,
        "NumberOfEmployees": 7,
        "SystemModstamp": None,
    },
]


def _listing() -> pl.DataFrame:
    frame = pl.from_arrow(to_arrow(PAGE, COLUMNS, primary_key="Id"))
    assert isinstance(frame, pl.DataFrame)
    return frame


def _md5_63(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "little") & (2**63 - 1)


def test_the_encoding_is_the_documented_one_and_stable():
    """Pinned to MD5 of the documented canonical text, so the number never changes with a library."""
    hashes = content_hash(_listing(), FIELDS).to_list()
    assert hashes[0] == _md5_63("4:Zoë15:zoe@example.com4:true2:4213:1740830400123")
    assert hashes[1] == _md5_63("3:BobN5:falseN13:1740830401000")
    assert hashes[2] == _md5_63("NNN1:7N")
    assert hashes[0] == 7494716921337359421  # the same, as a literal: any change of encoding fails here


def test_a_duckdb_round_trip_hashes_equal(tmp_path):
    listing = _listing()
    warehouse = Warehouse("duckdb", path=tmp_path / "w.duckdb")
    with warehouse.connect() as conn:
        # the warehouse's own types: snake_case names, other column order, 32-bit int, naive microseconds
        conn.execute(
            "CREATE TABLE contacts (system_modstamp TIMESTAMP, id VARCHAR, email VARCHAR, "
            "first_name VARCHAR, number_of_employees INTEGER, has_opted_out_of_email BOOLEAN)"
        )
        conn.executemany(
            "INSERT INTO contacts VALUES (?, ?, ?, ?, ?, ?)",
            [
                (datetime(2025, 3, 1, 12, 0, 0, 123456), "003A", "zoe@example.com", "Zoë", 42, True),
                (datetime(2025, 3, 1, 12, 0, 1), "003B", None, "Bob", None, False),
                (None, "003C", None, None, 7, None),
            ],
        )
    stored = warehouse.read_frame("SELECT * FROM contacts ORDER BY id")
    same = ["first_name", "email", "has_opted_out_of_email", "number_of_employees", "system_modstamp"]
    assert content_hash(stored, same).to_list() == content_hash(listing, FIELDS).to_list()
    # and hashed inside the warehouse, by the same SQL
    kinds = dict(zip(same, ["string", "string", "bool", "int", "datetime"], strict=True))
    in_db = warehouse.query(f"SELECT {content_hash_sql(kinds)} FROM contacts ORDER BY id")
    assert [row[0] for row in in_db] == content_hash(listing, FIELDS).to_list()


def test_datetime_precision_and_zone_do_not_matter_but_a_millisecond_does():
    instant = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    frame = pl.DataFrame({"t": [instant]}).with_columns(
        ns=pl.col("t").cast(pl.Datetime("ns", "UTC")),
        ms=pl.col("t").cast(pl.Datetime("ms", "UTC")),
        naive=pl.col("t").dt.replace_time_zone(None),
        berlin=pl.col("t").dt.convert_time_zone("Europe/Berlin"),
        plus_sub_ms=pl.col("t") + timedelta(microseconds=400),
        next_ms=pl.col("t") + timedelta(milliseconds=1),
    )
    hashes = {c: content_hash(frame, [c])[0] for c in frame.columns}
    assert len({hashes[c] for c in ("t", "ns", "ms", "naive", "berlin", "plus_sub_ms")}) == 1
    assert hashes["next_ms"] != hashes["t"]
    # before 1970 too: floored, not truncated towards zero
    early = pl.DataFrame({"t": [datetime(1969, 12, 31, 23, 59, 59, 999500)]})
    assert canonical_values(early, ["t"])["t"][0] == "2:-1"
    other_zone = pl.DataFrame(
        {"t": [datetime(2025, 3, 1, 14, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2)))]}
    )
    assert content_hash(other_zone, ["t"])[0] == hashes["t"]


def test_numbers_booleans_and_strings_normalise_by_value():
    frame = pl.DataFrame(
        {
            "i64": [5, None],
            "i8": pl.Series([5, None], dtype=pl.Int8),
            "f": [5.0, None],
            "s": ["5", None],
            "half": [5.5, None],
        }
    )
    assert len({content_hash(frame, [c])[0] for c in ("i64", "i8", "f", "s")}) == 1
    assert content_hash(frame, ["half"])[0] != content_hash(frame, ["i64"])[0]
    assert canonical_values(frame, ["half", "f"]).row(0) == ("3:5.5", "1:5")
    flags = pl.DataFrame({"b": [True, False], "s": ["true", "false"]})
    assert content_hash(flags, ["b"]).to_list() == content_hash(flags, ["s"]).to_list()


def test_null_is_not_empty_and_fields_cannot_bleed_into_each_other():
    frame = pl.DataFrame({"a": [None, "", "ab", "a", None], "b": ["x", "x", "c", "bc", None]})
    hashes = content_hash(frame, ["a", "b"]).to_list()
    assert len(set(hashes)) == 5
    swapped = pl.DataFrame({"a": ["x"], "b": [None]}, schema={"a": pl.String, "b": pl.String})
    assert content_hash(swapped, ["a", "b"])[0] != hashes[0]


def test_column_order_of_the_frame_does_not_matter_the_order_of_fields_does():
    listing = _listing()
    shuffled = listing.select(list(reversed(listing.columns)))
    assert content_hash(shuffled, FIELDS).to_list() == content_hash(listing, FIELDS).to_list()
    assert content_hash(listing, list(reversed(FIELDS))).to_list() != content_hash(listing, FIELDS).to_list()


def test_all_null_columns_empty_frames_and_bad_arguments():
    frame = pl.DataFrame({"a": [None, None], "b": ["x", None]})  # "a" has the Null dtype
    typed = frame.with_columns(pl.col("a").cast(pl.String))
    assert content_hash(frame, ["a", "b"]).to_list() == content_hash(typed, ["a", "b"]).to_list()
    empty = content_hash(frame.clear(), ["a", "b"])
    assert empty.dtype == pl.UInt64 and empty.name == "content_hash" and empty.len() == 0
    with pytest.raises(ValueError):
        content_hash(frame, [])
    with pytest.raises(KeyError):
        content_hash(frame, ["nope"])
    with pytest.raises(TypeError):
        content_hash(pl.DataFrame({"l": [[1]]}), ["l"])


def test_hashes_keep_row_order_on_a_large_frame():
    """DuckDB scans in parallel: the hashes must still line up with the rows."""
    frame = pl.DataFrame({"n": pl.int_range(300_000, eager=True)})
    forward = content_hash(frame, ["n"])
    backward = content_hash(frame.reverse(), ["n"]).reverse()
    assert forward.equals(backward) and forward.n_unique() == frame.height


def test_sql_expression_in_duckdb_matches_for_every_kind():
    frame = pl.DataFrame(
        {
            "s": ["a", None],
            "b": [True, None],
            "i": [3, None],
            "f": [2.5, None],
            "t": [datetime(2025, 1, 1, tzinfo=UTC), None],
            "d": [datetime(2025, 1, 1).date(), None],
        }
    )
    kinds = {"s": "string", "b": "bool", "i": "int", "f": "float", "t": "datetime", "d": "date"}
    conn = duckdb.connect()
    conn.register("frame", frame)
    in_sql = [r[0] for r in conn.sql(f"SELECT {content_hash_sql(kinds)} FROM frame").fetchall()]
    assert in_sql == content_hash(frame, list(kinds)).to_list()
    # a date is midnight UTC of that day
    assert content_hash(frame, ["d"])[0] == content_hash(frame, ["t"])[0]
