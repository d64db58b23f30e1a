"""One Dagster instance for a whole test (runs, materializations and sensor ticks see each other),
at a controllable time: ``freeze_time`` moves Dagster's clock, which event timestamps use too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.test_utils import freeze_time

from sync_platform.core.instance import ensure_dagster_home
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.alerts import AlertBook
from sync_platform_tests.defs.conftest import SyncHarness


def write_config(path: Path, alerts: dict | None = None, **per_crm: dict) -> None:
    crms = {
        crm: {
            "backoff_initial_seconds": 0.01,
            "backoff_max_seconds": 0.05,
            "max_attempts": 2,
            **per_crm.get(crm, {}),
        }
        for crm in ("salesforce", "hubspot", "dynamics")
    }
    path.write_text(yaml.safe_dump({"crms": crms, "alerts": alerts or {}}))


class Monitor:
    def __init__(self, harness: SyncHarness, instance: dg.DagsterInstance, config: Path) -> None:
        self.harness = harness
        self.admin = harness.admin
        self.instance = instance
        self.config = config
        from sync_platform.definitions import defs

        self.defs = defs()

    def configure(self, alerts: dict | None = None, **per_crm: dict) -> None:
        write_config(self.config, alerts, **per_crm)

    def run(
        self, job: str, at: datetime | None = None, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        definition = self.defs.resolve_job_def(job)
        if at is None:
            return definition.execute_in_process(instance=self.instance, raise_on_error=raise_on_error)
        with freeze_time(at):
            return definition.execute_in_process(instance=self.instance, raise_on_error=raise_on_error)

    def tick(self, sensor: str, at: datetime) -> str:
        """Evaluate a sensor once at ``at``; returns its skip message (what the UI shows for the tick)."""
        definition = self.defs.resolve_sensor_def(sensor)
        with freeze_time(at):
            context = dg.build_sensor_context(
                instance=self.instance, definitions=self.defs, resources=self.defs.resources
            )
            return definition.evaluate_tick(context).skip_message or ""

    def book(self) -> AlertBook:
        return AlertBook(Warehouse.from_env(), sinks=[])

    def outbox(self) -> list[Path]:
        return sorted((self.harness.data_dir / "alerts" / "outbox").glob("*.eml"))


@pytest.fixture
def monitor(
    harness_factory: Callable[..., SyncHarness], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Monitor]:
    config = tmp_path / "sync.yaml"
    write_config(config)
    monkeypatch.setenv("SYNC_PLATFORM_CONFIG", str(config))
    harness = harness_factory()
    monkeypatch.setenv(
        "SYNC_PLATFORM_ALERT_WEBHOOK_URL", f"{harness.server.base_url}/__sandbox/webhooks/alerts"
    )
    home = harness.data_dir / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # restored after the test; ensure_dagster_home sets it too
    ensure_dagster_home(home)
    with dg.DagsterInstance.get() as instance:
        yield Monitor(harness, instance, config)
