"""The embedded warehouse's turn: a process that finds DuckDB in use waits for it instead of failing.

DuckDB's own lock makes a second process fail at once ("Conflicting lock is held"); these tests
hold the warehouse from another process, as a parallel Dagster step does, and check that a writer
waits and then lands, that a sensor-style caller is told at once, and that readers wait too.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from sync_platform.core.warehouse import DUCKDB, Warehouse, WarehouseBusy
from sync_platform_tests.conftest import Holder


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(DUCKDB, path=tmp_path / "warehouse.duckdb")


def test_a_writer_waits_for_the_warehouse_then_lands(warehouse: Warehouse) -> None:
    holder = Holder(warehouse.path)
    waiting = threading.Event()
    outcome: list[object] = []

    def write() -> None:
        try:
            with warehouse.turn(on_wait=lambda message: waiting.set()):
                outcome.append(warehouse.query("SELECT count(*) FROM held"))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcome.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    assert waiting.wait(timeout=60), "the writer should say it is waiting"
    assert not outcome, "nothing may be written while another process has the file"
    holder.release()
    writer.join(timeout=60)
    assert outcome == [[(0,)]]


def test_every_connection_waits_its_turn_instead_of_failing_on_duckdbs_lock(warehouse: Warehouse) -> None:
    holder = Holder(warehouse.path)
    waiting = threading.Event()
    handler = logging.Handler()
    handler.emit = lambda record: waiting.set() if "waiting for" in record.getMessage() else None  # type: ignore[method-assign]
    logger = logging.getLogger("sync_platform.core.warehouse")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    result: list[object] = []

    def read() -> None:
        try:
            result.append(warehouse.query("SELECT 41 + 1"))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            result.append(exc)
            waiting.set()

    reader = threading.Thread(target=read)
    try:
        reader.start()
        assert waiting.wait(timeout=60) and not result, f"the reader should wait, not fail: {result}"
        holder.release()
    finally:
        logger.removeHandler(handler)
    reader.join(timeout=60)
    assert result == [[(42,)]]


def test_a_caller_that_must_not_wait_is_told_at_once(warehouse: Warehouse) -> None:
    holder = Holder(warehouse.path)
    with pytest.raises(WarehouseBusy, match="in use by another process"):
        with warehouse.turn(wait=False):
            pass
    holder.release()
    with warehouse.turn(wait=False):
        assert warehouse.query("SELECT 1") == [(1,)]  # re-entrant in the thread that holds it


def test_postgres_needs_no_turn() -> None:
    with Warehouse("postgres", dsn="postgresql://nobody@127.0.0.1:1/none").turn(wait=False):
        pass


def test_the_dsn_never_shows_in_the_warehouse_repr() -> None:
    warehouse = Warehouse("postgres", dsn="postgresql://sync:s3cret-pw@db.internal:5432/warehouse")
    assert "s3cret-pw" not in repr(warehouse) and "s3cret-pw" not in str(warehouse)


def test_creating_a_pipeline_waits_while_another_process_has_the_turn(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's dlt may wipe and rebuild its pipeline folder while it has the turn; a second run of
    the same CRM creating that pipeline meanwhile wrote into the folder and failed the first
    ("Directory not empty"). Creation waits for the turn like every other use of the pipeline."""
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    holder = Holder(warehouse.path)
    waiting = threading.Event()
    created: list[object] = []
    warehouse = Warehouse(DUCKDB, path=warehouse.path, notify=lambda message: waiting.set())

    def create() -> None:
        try:
            created.append(warehouse.pipeline("sync_salesforce", "raw_salesforce"))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            created.append(exc)

    creator = threading.Thread(target=create)
    creator.start()
    try:
        assert waiting.wait(timeout=60), "creating the pipeline should wait for the turn"
        assert not created and not (tmp_path / "data" / "dlt_pipelines" / "sync_salesforce").exists()
    finally:
        holder.release()
        creator.join(timeout=60)
    assert len(created) == 1 and not isinstance(created[0], Exception), created
