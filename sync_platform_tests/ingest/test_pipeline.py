"""The sync pipeline's dlt settings: DuckDB loads run under a fixed memory cap an operator can change."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from sync_platform.core.warehouse import DUCKDB, DUCKDB_LOAD_CONFIG, Warehouse
from sync_platform.ingest.pipeline import build_pipeline

CONFIG_ENV = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"


def _memory_limit_after_merge(tmp_path: Path) -> tuple[str, list[tuple]]:
    pipeline = build_pipeline("salesforce", Warehouse(DUCKDB, path=tmp_path / "warehouse.duckdb"))
    page = pa.table({"Id": ["a", "b", "a"], "Name": ["old", "b", "new"]})
    pipeline.run(page, table_name="contacts", write_disposition="merge", primary_key="Id")
    with pipeline.sql_client() as sql:
        limit = sql.execute_sql("SELECT current_setting('memory_limit')")[0][0]
        rows = sql.execute_sql("SELECT id, count(*) FROM contacts GROUP BY id ORDER BY id")
    return limit, [tuple(r) for r in rows]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(CONFIG_ENV, "")  # recorded: the default build_pipeline sets is undone afterwards
    monkeypatch.delenv(CONFIG_ENV)
    return tmp_path


def test_duckdb_loads_run_under_the_memory_cap_and_still_deduplicate(data_dir: Path) -> None:
    limit, rows = _memory_limit_after_merge(data_dir)
    assert DUCKDB_LOAD_CONFIG["memory_limit"] == "128MB"
    assert limit == "122.0 MiB"  # 128 MB as DuckDB reports it, not its default share of RAM
    assert rows == [("a", 1), ("b", 1)]


def test_an_operators_duckdb_settings_win(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, json.dumps({"memory_limit": "1GB"}))
    limit, _ = _memory_limit_after_merge(data_dir)
    assert limit == "953.6 MiB"
