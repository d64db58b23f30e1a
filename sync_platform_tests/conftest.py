"""Shared fixtures: CRM sandboxes on ephemeral ports, started in-process and stopped cleanly."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from sync_platform.sandbox import SandboxConfig, SandboxServer
from sync_platform.sandbox.client import SandboxAdminClient


def _serve(config: SandboxConfig, tls: bool = False) -> Iterator[SandboxServer]:
    server = SandboxServer(config, tls=tls).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A fresh plain-HTTP sandbox with 500 contacts per CRM (start-up is O(1), so per-test is cheap)."""
    yield from _serve(SandboxConfig(contacts=500, seed=7))


@pytest.fixture
def tls_sandbox() -> Iterator[SandboxServer]:
    """A fresh HTTPS sandbox (self-signed CA in ``server.ca_file``) for simple-salesforce."""
    yield from _serve(SandboxConfig(contacts=500, seed=7), tls=True)


@pytest.fixture
def admin(sandbox: SandboxServer) -> Iterator[SandboxAdminClient]:
    with SandboxAdminClient(sandbox.base_url) as client:
        yield client


@pytest.fixture
def tls_admin(tls_sandbox: SandboxServer) -> Iterator[SandboxAdminClient]:
    with SandboxAdminClient(tls_sandbox.base_url, verify=tls_sandbox.ca_file) as client:
        yield client


ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A throwaway database on the real local PostgreSQL server (127.0.0.1:5432, trust auth)."""
    name = f"sync_platform_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        cur = admin.cursor()
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


HOLDER = """
import sys
import duckdb
from pathlib import Path
from sync_platform.core.warehouse import Warehouse
warehouse = Warehouse("duckdb", path=Path(sys.argv[1]))
with warehouse.turn():
    conn = duckdb.connect(sys.argv[1])  # the file itself is open, as in a dlt load
    conn.execute("CREATE TABLE IF NOT EXISTS held (n INTEGER)")
    print("held", flush=True)
    sys.stdin.readline()  # until the test lets go
    conn.close()
print("released", flush=True)
"""


class Holder:
    """Another process with the warehouse's turn and the DuckDB file open."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "released"
        assert self.process.wait(timeout=60) == 0
