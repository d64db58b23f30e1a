"""Page conversion: a record that cannot be loaded as declared is set aside, the page still loads."""

from __future__ import annotations

import pytest

from sync_platform.ingest.sources.arrow import BOOL, DATETIME, INT, STRING, to_arrow

COLUMNS = {"Id": STRING, "Count": INT, "Active": BOOL, "Stamp": DATETIME, "Email": STRING}


def _row(n: int, **values: object) -> dict:
    return {
        "Id": f"r{n}",
        "Count": str(n),
        "Active": "true",
        "Stamp": "2025-01-02T03:04:05.000+0000",
        "Email": f"p{n}@example.com",
        **values,
    }


def test_bad_records_are_rejected_with_their_kind_and_column_and_the_rest_load():
    rows = [
        _row(1),
        _row(2, Count="many"),
        _row(3, Active="maybe"),
        _row(4, Stamp="yesterday"),
        _row(5, Id=""),
        _row(6, Count=7.0, Active=False, Stamp=None),
    ]
    rejects: list = []
    table = to_arrow(rows, COLUMNS, primary_key="Id", rejects=rejects)
    assert table.column("Id").to_pylist() == ["r1", "r6"]
    assert table.column("Count").to_pylist() == [1, 7]
    assert str(table.schema.field("Stamp").type) == "timestamp[us, tz=UTC]"
    assert sorted((r.record_id or "", r.kind, r.reason) for r in rejects) == [
        ("", "validation", "Id: missing primary key"),
        ("r2", "parse", "Count: not a valid int"),
        ("r3", "parse", "Active: not a valid bool"),
        ("r4", "parse", "Stamp: not a valid datetime"),
    ]
    assert next(r for r in rejects if r.record_id == "r2").payload is rows[1], "the record as received"
    assert all("many" not in r.reason and "@" not in r.reason for r in rejects), "reasons never carry values"


def test_without_a_rejects_list_a_bad_record_raises_instead_of_loading_nulls():
    with pytest.raises(ValueError, match="Count: not a valid int"):
        to_arrow([_row(1, Count="many")], COLUMNS, primary_key="Id")
    assert to_arrow([], COLUMNS, primary_key="Id", rejects=[]).num_rows == 0
