"""Run the real ingest jobs through Dagster against a sandbox, into a throwaway warehouse."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from sync_platform.core.config import CrmSyncConfig, load_sync_config
from sync_platform.core.settings import load_settings
from sync_platform.core.warehouse import Warehouse
from sync_platform.defs.resources import SyncConfigResource, WarehouseResource
from sync_platform.sandbox import SandboxConfig, SandboxServer
from sync_platform.sandbox.client import SandboxAdminClient


class SyncHarness:
    def __init__(
        self, server: SandboxServer, admin: SandboxAdminClient, data_dir: Path, instance: dg.DagsterInstance
    ) -> None:
        self.server = server
        self.admin = admin
        self.data_dir = data_dir
        self.instance = instance  # one instance per test: run history carries over, as in production

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse.from_settings(load_settings())

    @property
    def resources(self) -> dict[str, object]:
        """Handed to every run: the test's warehouse (DuckDB under its data dir, or the PostgreSQL
        database a test configured) and its sync.yaml, as configured at the time of the run."""
        settings = load_settings()
        return {
            "warehouse": WarehouseResource.from_settings(settings),
            "sync_config": SyncConfigResource.from_settings(settings),
        }

    def config(self, crm: str) -> CrmSyncConfig:
        return load_sync_config().crm(crm)

    def run(
        self, crm: str, full_refresh: bool = False, raise_on_error: bool = True
    ) -> tuple[dg.ExecuteInProcessResult, dict[str, dict]]:
        """Run ``<crm>_sync`` (or its full refresh) and return per-object metadata values."""
        return self.run_job(f"{crm}_full_refresh" if full_refresh else f"{crm}_sync", raise_on_error)

    def run_job(
        self, name: str, raise_on_error: bool = True, run_config: dict | None = None
    ) -> tuple[dg.ExecuteInProcessResult, dict[str, dict]]:
        """Run any job of the project; metadata values keyed by the asset key's last part."""
        from sync_platform.definitions import defs

        job = defs().resolve_job_def(name)
        result = job.execute_in_process(
            instance=self.instance,
            raise_on_error=raise_on_error,
            resources=self.resources,
            run_config=run_config,
        )
        return result, self._metadata(result)

    def run_assets(
        self, *keys: str, raise_on_error: bool = True
    ) -> tuple[dg.ExecuteInProcessResult, dict[str, dict]]:
        """Materialize assets by key (``"reconcile/salesforce/contacts"``); metadata keyed by full path."""
        from sync_platform.definitions import defs

        job = defs().resolve_implicit_global_asset_job_def()
        selection = [dg.AssetKey.from_user_string(k) for k in keys]
        # the implicit asset job takes the resources bound in the definitions (from the same settings)
        result = job.execute_in_process(
            instance=self.instance, asset_selection=selection, raise_on_error=raise_on_error
        )
        return result, {"/".join(k.path): v for k, v in self._metadata(result, full=True).items()}

    def checks(self, result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
        """Check evaluations of a run keyed by ``asset/path:check_name``."""
        return {
            f"{'/'.join(e.asset_key.path)}:{e.check_name}": e
            for e in (
                ev.event_specific_data
                for ev in result.all_events
                if ev.event_type_value == "ASSET_CHECK_EVALUATION"
            )
        }

    @staticmethod
    def _metadata(result: dg.ExecuteInProcessResult, full: bool = False) -> dict:
        meta = {}
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            meta[mat.asset_key if full else mat.asset_key.path[-1]] = {
                k: getattr(v, "value", v) for k, v in mat.metadata.items()
            }
        return meta

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.warehouse.query(sql, params)


@pytest.fixture
def harness_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SyncHarness]]:
    servers: list[SandboxServer] = []
    instances = contextlib.ExitStack()

    def make(contacts: int = 500, **config: object) -> SyncHarness:
        server = SandboxServer(SandboxConfig(contacts=contacts, seed=11, **config)).start()
        servers.append(server)
        monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("SYNC_PLATFORM_SANDBOX_URL", server.base_url)
        monkeypatch.delenv("SYNC_PLATFORM_WAREHOUSE", raising=False)
        instance = instances.enter_context(dg.instance_for_test())
        return SyncHarness(server, SandboxAdminClient(server.base_url), tmp_path / "data", instance)

    yield make
    instances.close()
    for server in servers:
        server.stop()


@pytest.fixture
def harness(harness_factory: Callable[..., SyncHarness]) -> SyncHarness:
    return harness_factory()
