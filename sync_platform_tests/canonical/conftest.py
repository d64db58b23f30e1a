"""Fixtures of the canonical tests: the shipped mapping files and generated sandbox populations."""

from __future__ import annotations

import pytest

from sync_platform.canonical.mapping import Mapping, load_mappings
from sync_platform.core.settings import PROJECT_ROOT
from sync_platform.sandbox.state import SandboxConfig, SandboxState

MAPPINGS_DIR = PROJECT_ROOT / "data" / "mappings"


@pytest.fixture(scope="session")
def mappings() -> dict[str, Mapping]:
    return load_mappings(MAPPINGS_DIR)


@pytest.fixture(scope="session")
def population() -> SandboxState:
    """2,000 contacts per CRM, as generated: the ground truth of who is who."""
    return SandboxState(SandboxConfig(contacts=2000, seed=42))


@pytest.fixture(scope="session")
def edited_population() -> SandboxState:
    """A small sandbox after some deletes: soft-deleted rows, HubSpot archives, Dynamics tombstones."""
    state = SandboxState(SandboxConfig(contacts=200, seed=3))
    for crm, obj in (("salesforce", "Contact"), ("hubspot", "contacts"), ("dynamics", "contacts")):
        for index in (4, 9):
            state.store(crm, obj).delete(index)
    return state
