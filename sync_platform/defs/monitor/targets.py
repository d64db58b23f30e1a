"""What the monitor watches: every raw asset of the ingest domain and every canonical asset."""

from __future__ import annotations

from sync_platform.canonical.model import ENTITY_TABLES
from sync_platform.core.config import SyncConfig, load_sync_config
from sync_platform.defs.ingest.assets import raw_assets
from sync_platform.monitor.freshness import FreshnessExpectation, freshness_expectations


def raw_paths() -> list[tuple[str, ...]]:
    return sorted(tuple(key.path) for assets in raw_assets for key in assets.keys)


def canonical_entity_paths() -> list[tuple[str, ...]]:
    return [("canonical", table) for table, _ in ENTITY_TABLES.values()]


def canonical_paths() -> list[tuple[str, ...]]:
    return [*canonical_entity_paths(), ("canonical", "duplicates")]


def expectations(config: SyncConfig | None = None) -> list[FreshnessExpectation]:
    """From ``config`` (sensors pass the one they read per tick), else ``sync.yaml`` as it is now."""
    return freshness_expectations(config or load_sync_config(), raw_paths(), canonical_paths())
