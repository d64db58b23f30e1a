"""RawHistory's copy on its own: which loaded rows become versions, with dlt merging into DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from sync_platform.core.warehouse import DUCKDB, Warehouse, apply_dlt_defaults, run_pipeline
from sync_platform.ingest.history import RawHistory

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    apply_dlt_defaults()
    warehouse = Warehouse(DUCKDB, path=tmp_path / "data" / "w.duckdb")
    pipeline = warehouse.pipeline("history_unit", "raw_salesforce")

    def run(*rows: tuple[str, str, datetime]) -> RawHistory:
        frame = pl.DataFrame(
            {
                "id": [r[0] for r in rows],
                "title": [r[1] for r in rows],
                "system_modstamp": [r[2] for r in rows],
                "deleted_at": [None] * len(rows),
            },
            schema_overrides={"deleted_at": pl.Datetime("us", "UTC")},
        )
        run_pipeline(
            pipeline, frame.to_arrow(), table_name="contacts", write_disposition="merge", primary_key="id"
        )
        return RawHistory(warehouse)

    return run


def titles(history: RawHistory, record: str) -> list[str]:
    return history.versions("salesforce", "contacts", record)["title"].to_list()


def test_a_replay_is_not_kept_twice_and_a_backwards_stamp_with_new_content_is_a_version(load) -> None:
    history = load(("a", "CTO", T0 + timedelta(hours=2)), ("b", "CEO", T0))
    assert history.record("salesforce", ["contacts"])[0].versions == 2
    load(("a", "CTO", T0 + timedelta(hours=2)))  # the same row again (a look-back re-read)
    assert history.record("salesforce", ["contacts"])[0].versions == 0
    # an admin script stamps an older date while the content changes (the incident's shape)
    load(("a", "VP", T0 + timedelta(hours=1)))
    assert history.record("salesforce", ["contacts"])[0].versions == 1
    load(("b", "CFO", T0 + timedelta(hours=3)))  # stamped later than anything kept
    assert history.record("salesforce", ["contacts"])[0].versions == 1
    load(("a", "CTO", T0 + timedelta(hours=2)))  # back to an older version: kept, it is news now
    assert history.record("salesforce", ["contacts"])[0].versions == 1
    assert titles(history, "a") == ["CTO", "VP", "CTO"] and titles(history, "b") == ["CEO", "CFO"]
