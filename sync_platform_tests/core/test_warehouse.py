"""Warehouse.write_frame on DuckDB: replace, append with new columns of any type, names validated."""

from datetime import UTC, datetime

import polars as pl
import pytest

from sync_platform.core.warehouse import Warehouse


def test_append_adds_new_columns_with_their_types(tmp_path):
    warehouse = Warehouse("duckdb", path=tmp_path / "w.duckdb")
    warehouse.write_frame(pl.DataFrame({"id": ["a"]}), "ops", "frames")
    later = pl.DataFrame(
        {
            "id": ["b"],
            "at": [datetime(2026, 1, 1, tzinfo=UTC)],
            "tags": [["x", "y"]],
            "detail": [{"field name": 1, "kind": "k"}],
            "empty": [None],
        }
    )
    warehouse.write_frame(later, "ops", "frames", disposition="append")
    types = dict(
        warehouse.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'ops' AND table_name = 'frames'"
        )
    )
    assert types["at"] == "TIMESTAMP WITH TIME ZONE" and types["tags"] == "VARCHAR[]"
    assert types["detail"].startswith("STRUCT(") and types["empty"] == "VARCHAR"
    rows = warehouse.query("SELECT id, detail['field name'] FROM ops.frames ORDER BY id")
    assert rows == [("a", None), ("b", 1)]


@pytest.mark.parametrize(("dataset", "table"), [("ops", 'x"; DROP TABLE ops.keep; --'), ("ops; DROP", "t")])
def test_a_name_that_is_not_an_identifier_is_refused(tmp_path, dataset, table):
    warehouse = Warehouse("duckdb", path=tmp_path / "w.duckdb")
    warehouse.write_frame(pl.DataFrame({"n": [1]}), "ops", "keep")
    with pytest.raises(ValueError, match="not a safe SQL identifier"):
        warehouse.write_frame(pl.DataFrame({"n": [2]}), dataset, table)
    assert warehouse.query("SELECT n FROM ops.keep") == [(1,)]
