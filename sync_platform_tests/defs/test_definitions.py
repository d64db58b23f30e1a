"""The asset graph as a reviewed snapshot: an accidental change to it shows up as a failing test.

After an intended change (a new asset, a renamed job, another schedule), regenerate the snapshot
with ``UPDATE_DEFINITIONS_SNAPSHOT=1 .venv/bin/python -m pytest sync_platform_tests/defs/test_definitions.py``
and review its diff with the code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from sync_platform.definitions import defs

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")


def definitions_snapshot() -> dict:
    """Asset keys with their groups, dependencies, checks and kinds; jobs, schedules and sensors."""
    repo = defs().get_repository_def()
    graph = repo.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(d.to_user_string() for d in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
            "kinds": sorted(node.kinds),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "schedules": {
            s.name: {"job": s.job_name, "cron": s.cron_schedule, "default_status": s.default_status.value}
            for s in sorted(repo.schedule_defs, key=lambda s: s.name)
        },
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "executors": sorted({j.executor_def.name for j in repo.get_all_jobs()}),
    }


@pytest.fixture
def shipped_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The definitions as the repository ships them: data/sync.yaml and data/mappings, a scratch data dir."""
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    for name in ("SYNC_PLATFORM_CONFIG", "SYNC_PLATFORM_MAPPINGS_DIR", "SYNC_PLATFORM_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)


def test_definitions_load_and_resolve(shipped_config: None) -> None:
    loaded = defs()
    assert isinstance(loaded, dg.Definitions)
    loaded.get_repository_def()  # resolves every asset, check, job, schedule and sensor


def test_the_asset_graph_matches_the_reviewed_snapshot(shipped_config: None) -> None:
    current = definitions_snapshot()
    if os.environ.get("UPDATE_DEFINITIONS_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for section in ("jobs", "schedules", "sensors", "executors"):
        assert current[section] == expected[section], (
            f"{section} changed: review, then regenerate the snapshot"
        )
    added = sorted(set(current["assets"]) - set(expected["assets"]))
    removed = sorted(set(expected["assets"]) - set(current["assets"]))
    assert not added and not removed, f"assets added {added}, removed {removed}: review, then regenerate"
    changed = {
        k: (expected["assets"][k], v) for k, v in current["assets"].items() if v != expected["assets"][k]
    }
    assert not changed, f"assets changed (expected, now): {changed}"


def test_every_asset_check_and_sensor_gets_its_resources_from_the_definitions(shipped_config: None) -> None:
    """Resources are wired once in defs/: nothing may ask for one that is not there."""
    loaded = defs()
    assert set(loaded.resources or {}) >= {"warehouse", "sync_config", "dlt"}
    repo = loaded.get_repository_def()
    for job in repo.get_all_jobs():
        assert job.resource_defs.keys() >= {"warehouse", "sync_config"}


def test_the_forkserver_preloads_start_no_thread_and_write_nothing(tmp_path: Path) -> None:
    """Every step of a run is forked from a server that imported ``PRELOADED``: a thread or an open
    connection made at import would be copied, half-alive, into every step."""
    import subprocess
    import sys

    from sync_platform.definitions import PRELOADED

    data = tmp_path / "data"
    probe = (
        "import importlib, sys, threading\n"
        f"for name in {PRELOADED!r}: importlib.import_module(name)\n"
        "print(threading.active_count())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_PLATFORM_", "DAGSTER_"))}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "SYNC_PLATFORM_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip() == "1", "only the main thread"
    assert not data.exists() or not any(data.rglob("*")), "nothing written"
    assert defs().resolve_job_def("sync_all").executor_def.name == "forkserver_multiprocess"
