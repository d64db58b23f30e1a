"""What the monitor watches: every raw asset of the ingest domain and every canonical asset."""

from __future__ import annotations

from sync_platform.canonical_build import ENTITIES
from sync_platform.config import load_sync_config
from sync_platform.monitor.freshness import FreshnessExpectation, freshness_expectations

from ..ingest.assets import raw_assets


def raw_paths() -> list[tuple[str, ...]]:
    return sorted(tuple(key.path) for assets in raw_assets for key in assets.keys)


def canonical_entity_paths() -> list[tuple[str, ...]]:
    return [("canonical", table) for table, _ in ENTITIES.values()]


def canonical_paths() -> list[tuple[str, ...]]:
    return [*canonical_entity_paths(), ("canonical", "duplicates")]


def expectations() -> list[FreshnessExpectation]:
    """Read per call: an edited sync.yaml applies at the next sensor tick."""
    return freshness_expectations(load_sync_config(), raw_paths(), canonical_paths())
