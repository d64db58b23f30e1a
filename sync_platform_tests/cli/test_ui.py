"""`make ui` (`sync-platform ui`): the real webserver on a fresh data directory, jobs launched through
its GraphQL API as the UI's Launch button and its "Materialize all" button do, several at once."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

SYNC_PLATFORM = str(Path(sys.executable).parent / "sync-platform")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_line(lines: queue.Queue, needle: str, seen: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, "the UI stopped:\n" + "".join(seen[-40:])
        seen.append(line)
        if needle in line:
            return


def _wait_until_serving(port: int, timeout: float) -> None:
    """Dagster prints "Serving" just before its server binds: wait until it answers."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the webserver never answered"
        time.sleep(0.2)


def _wait_for_run(client, run_id: str, timeout: float) -> str:
    """The run's final status. Polls the webserver: a run's end is a state of another process."""
    from dagster import DagsterRunStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id)
        if status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
            return status.value
        time.sleep(1.0)
    return "TIMEOUT"


def _stop_group(process: subprocess.Popen, grace: float = 60) -> None:
    """SIGTERM the UI's whole process group (dagster dev, its daemon, code servers, run workers) and
    wait until every member is gone; SIGKILL what is left after ``grace`` seconds."""
    os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _live_members(process.pid):
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    process.wait(timeout=grace)


def _live_members(group: int) -> list[int]:
    """Processes of ``group`` that still run (zombies whose parent is gone do not count)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _every_asset(client) -> list[list[str]]:
    """The asset keys the UI's asset graph shows: "Materialize all" selects every one of them."""
    nodes = client._execute("{ assetNodes { assetKey { path } } }")["assetNodes"]
    return [node["assetKey"]["path"] for node in nodes]


@pytest.mark.timeout(900)
def test_make_ui_serves_a_fresh_instance_where_sync_all_and_materialize_all_launched_three_times_succeed(
    tmp_path,
):
    from dagster_graphql import DagsterGraphQLClient

    port = _free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "SYNC_PLATFORM_", "DAGSTER_"))
    }
    env["SYNC_PLATFORM_DATA_DIR"] = str(tmp_path / "data")  # nothing there yet: not even the Dagster home
    process = subprocess.Popen(
        [SYNC_PLATFORM, "ui", "--port", str(port), "--contacts", "50"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        _wait_for_line(lines, f"Dagster UI: http://127.0.0.1:{port}", seen, 120)
        _wait_for_line(lines, "Serving dagster-webserver on", seen, 300)
        _wait_until_serving(port, 60)
        assert (tmp_path / "data" / "dagster_home" / "dagster.yaml").exists()
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        every_asset = _every_asset(client)
        assert ["raw", "salesforce", "contacts"] in every_asset and ["canonical", "contacts"] in every_asset
        launched = {}
        for n in range(3):  # interleaved, as three people clicking at once would
            launched[f"sync_all #{n}"] = client.submit_job_execution("sync_all")
            launched[f"Materialize all #{n}"] = client.submit_job_execution(
                "__ASSET_JOB", asset_selection=every_asset
            )
        statuses = {name: _wait_for_run(client, run_id, 600) for name, run_id in launched.items()}
        assert set(statuses.values()) == {"SUCCESS"}, f"{statuses}\n" + "".join(seen[-60:])
    finally:
        _stop_group(process)
