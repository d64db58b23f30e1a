"""The Dagster instance the CLI prepares: its pool settings load in Dagster and reach old homes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from sync_platform.core.instance import LOCAL_YAML, POSTGRES_YAML, ensure_dagster_home


@pytest.fixture(autouse=True)
def _restore_dagster_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # put back after the test


def test_the_prepared_instance_limits_the_warehouse_pool_per_run(tmp_path: Path) -> None:
    """Run granularity: the queue holds runs instead of their steps polling for a slot."""
    home = ensure_dagster_home(tmp_path / "home", postgres=False)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1
        assert pools.pool_granularity.value == "run"


def test_a_dagster_yaml_written_by_an_earlier_version_is_updated_and_a_users_own_is_kept(
    tmp_path: Path,
) -> None:
    ours = tmp_path / "ours"
    ours.mkdir()
    old = LOCAL_YAML.replace("    granularity: run\n", "")
    assert old != LOCAL_YAML
    (ours / "dagster.yaml").write_text(old)
    ensure_dagster_home(ours, postgres=False)
    assert (ours / "dagster.yaml").read_text() == LOCAL_YAML
    assert sorted(p.name for p in ours.iterdir()) == ["dagster.yaml"], "no scratch file left"

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    ensure_dagster_home(theirs, postgres=True)
    assert (theirs / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"

    switched = tmp_path / "switched"  # ours, but for the other storage: the user's choice stands
    switched.mkdir()
    (switched / "dagster.yaml").write_text(POSTGRES_YAML)
    ensure_dagster_home(switched, postgres=False)
    assert (switched / "dagster.yaml").read_text() == POSTGRES_YAML
