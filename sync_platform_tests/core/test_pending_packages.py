"""After a failed load, the next load of the same pipeline must load its own data.

dlt keeps the package of a failed load pending; the next ``pipeline.run(new_data)`` loads that old
package instead, logs a warning, skips the new data and returns normally. A package extracted
and normalized but never loaded is exactly what a failed load leaves behind.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sync_platform.core.warehouse import DUCKDB, POSTGRES, Warehouse, run_pipeline


def leave_pending_package(pipeline, table: str, rows: list[dict]) -> None:
    """What a failed load leaves: a package extracted and normalized, never loaded."""
    pipeline.extract(rows, table_name=table)
    pipeline.normalize()
    assert pipeline.has_pending_data


def test_a_run_after_a_failed_load_loads_its_own_data(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    warehouse = Warehouse(DUCKDB, path=tmp_path / "warehouse.duckdb")
    pipeline = warehouse.pipeline("items", "items")
    run_pipeline(pipeline, [{"id": 0, "v": "first"}], table_name="items")
    leave_pending_package(pipeline, "items", [{"id": 1, "v": "from the failed run"}])

    run_pipeline(pipeline, [{"id": 2, "v": "new"}], table_name="items")

    assert warehouse.query("SELECT id, v FROM items.items ORDER BY id") == [(0, "first"), (2, "new")]
    assert not pipeline.has_pending_data


def test_write_frame_on_postgres_lands_after_a_failed_write(
    postgres_db: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    warehouse = Warehouse(POSTGRES, dsn=postgres_db)
    warehouse.write_frame(pl.DataFrame({"id": [1], "v": ["first"]}), "canonical", "things")
    leave_pending_package(
        warehouse.pipeline("frames_canonical", "canonical"), "things", [{"id": 9, "v": "stale"}]
    )

    warehouse.write_frame(pl.DataFrame({"id": [2], "v": ["second"]}), "canonical", "things")

    assert warehouse.query("SELECT id, v FROM canonical.things ORDER BY id") == [(2, "second")]


def test_no_loaded_package_keeps_the_rows_on_disk(tmp_path: Path, monkeypatch) -> None:
    """Completed load packages held the rows as files (listings hold emails): none are kept."""
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    warehouse = Warehouse(DUCKDB, path=tmp_path / "warehouse.duckdb")
    run_pipeline(
        warehouse.pipeline("people", "people"), [{"id": 1, "email": "ann@example.com"}], table_name="p"
    )
    kept = [
        path
        for path in (tmp_path / "data" / "dlt_pipelines").rglob("*")
        if path.is_file() and "ann@example.com" in path.read_text(errors="ignore")
    ]
    assert kept == []
