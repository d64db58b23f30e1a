"""Fixtures: canonical tables mapped from a generated sandbox with the shipped mapping files."""

from __future__ import annotations

import polars as pl
import pytest

from sync_platform.canonical.mapping import Mapping, apply_mapping
from sync_platform.ingest.sandbox_raw import raw_frames
from sync_platform.sandbox.state import SandboxConfig, SandboxState


@pytest.fixture(scope="session")
def state() -> SandboxState:
    """2,000 contacts per CRM, two of each CRM's contacts deleted (Dynamics leaves tombstones)."""
    state = SandboxState(SandboxConfig(contacts=2000, seed=11))
    for crm, obj in (("salesforce", "Contact"), ("hubspot", "contacts"), ("dynamics", "contacts")):
        for index in (10, 20):
            state.store(crm, obj).delete(index)
    return state


@pytest.fixture(scope="session")
def canonical(state: SandboxState, mappings: dict[str, Mapping]) -> dict[str, pl.DataFrame]:
    """Each canonical table: the three CRMs' mapped frames, one table per entity."""
    return {
        entity: pl.concat(
            [
                apply_mapping(mappings[crm], entity, raw).frame
                for crm, raw in raw_frames(state, entity).items()
            ]
        )
        for entity in ("contact", "account", "interaction")
    }
