"""Where the platform keeps its state, and how to override it.

Embedded default: everything under ``data/`` at the project root (DuckDB warehouse, Dagster
home, reports). Set ``SYNC_PLATFORM_DATA_DIR`` to move it; production settings (PostgreSQL)
arrive through environment variables documented in the README.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    mappings_dir: Path

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def sandbox_dir(self) -> Path:
        return self.data_dir / "sandbox"


def load_settings() -> Settings:
    data_dir = Path(os.environ.get("SYNC_PLATFORM_DATA_DIR", PROJECT_ROOT / "data")).resolve()
    mappings_dir = Path(os.environ.get("SYNC_PLATFORM_MAPPINGS_DIR", PROJECT_ROOT / "data" / "mappings")).resolve()
    return Settings(data_dir=data_dir, mappings_dir=mappings_dir)
