"""The doors an operator uses: ``dagster job execute`` on an instance of their own, steps in parallel.

A run launched outside the platform's own ``dagster.yaml`` (no ``warehouse_writes`` pool limit)
runs the three CRM steps in parallel processes. They used to die on DuckDB's file lock
("Conflicting lock is held"); each now waits for the warehouse's turn and the run succeeds.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sync_platform.core.settings import PROJECT_ROOT
from sync_platform.core.warehouse import DUCKDB, Warehouse
from sync_platform.sandbox import SandboxServer
from sync_platform_tests.conftest import Holder

DAGSTER = str(Path(sys.executable).parent / "dagster")


def _operator_env(tmp_path: Path, sandbox: SandboxServer) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()  # an empty instance: no dagster.yaml, so no pool limits
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SYNC_PLATFORM_DATA_DIR": str(tmp_path / "data"),
        "SYNC_PLATFORM_SANDBOX_URL": sandbox.base_url,
    }
    for name in ("SYNC_PLATFORM_WAREHOUSE", "SYNC_PLATFORM_CONFIG", "SYNC_PLATFORM_MAPPINGS_DIR"):
        env.pop(name, None)
    return env


def _lines(process: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.mark.timeout(900)
def test_sync_all_from_dagster_job_execute_waits_for_the_warehouse_instead_of_failing(tmp_path, sandbox):
    env = _operator_env(tmp_path, sandbox)
    warehouse = Warehouse(DUCKDB, path=tmp_path / "data" / "warehouse.duckdb")
    holder = Holder(warehouse.path)  # another process is using the warehouse when the run starts
    process = subprocess.Popen(
        [DAGSTER, "job", "execute", "-m", "sync_platform.definitions", "-d", str(PROJECT_ROOT)]
        + ["-j", "sync_all"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines, seen = _lines(process), []
    try:
        while True:
            line = lines.get(timeout=300)
            assert line is not None, "the run ended before waiting for the warehouse:\n" + "".join(seen[-40:])
            seen.append(line)
            if "waiting for the DuckDB warehouse" in line:
                break
    finally:
        holder.release()
    assert process.wait(timeout=600) == 0, "".join(seen[-60:]) + "".join(iter(lambda: lines.get() or "", ""))
    for crm, table in (("salesforce", "contacts"), ("hubspot", "contacts"), ("dynamics", "contacts")):
        assert warehouse.query(f"SELECT count(*) FROM raw_{crm}.{table}") == [(500,)]


LOADER = """
import sys
import sync_platform.definitions as module
print("ready", flush=True)
sys.stdin.readline()
module.defs().get_repository_def()
print("loaded", flush=True)
"""


def test_several_processes_load_the_definitions_at_once_on_a_fresh_data_dir(tmp_path, sandbox):
    """`dagster dev` and test workers load the definitions in parallel; loading created dlt pipeline
    folders and a second process failed with FileExistsError. All start together here."""
    env = _operator_env(tmp_path, sandbox)
    loaders = [
        subprocess.Popen(
            [sys.executable, "-c", LOADER],
            env=env,
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for loader in loaders:
        assert loader.stdout is not None and loader.stdout.readline().strip() == "ready"
    for loader in loaders:  # released together
        assert loader.stdin is not None
        loader.stdin.write("\n")
        loader.stdin.flush()
    for loader in loaders:
        out, err = loader.communicate(timeout=300)
        assert loader.returncode == 0 and out.strip() == "loaded", err[-2000:]


DEFINITIONS_ONLY = """
import sync_platform.definitions as module
repository = module.defs().get_repository_def()  # every asset, check, job, schedule and sensor
repository.get_all_jobs()  # the UI's "Materialize all" job among them
"""


def test_loading_the_definitions_writes_nothing_in_the_data_dir(tmp_path):
    """Every process that loads the code (the webserver, the daemon, each run and step) built the
    raw assets' dlt pipelines, and with them their working folders in the data dir, for specs only."""
    data = tmp_path / "data"  # not created: whatever appears, loading made it
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "SYNC_PLATFORM_", "DAGSTER_"))
    }
    env["SYNC_PLATFORM_DATA_DIR"] = str(data)
    loaded = subprocess.run(
        [sys.executable, "-c", DEFINITIONS_ONLY], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert not data.exists(), sorted(str(path.relative_to(data)) for path in data.rglob("*"))
