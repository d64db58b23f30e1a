"""Every environment variable the platform reads, in one place, and where it keeps its state.

Embedded default: everything under ``data/`` at the project root (DuckDB warehouse, Dagster
home, reports). Set ``SYNC_PLATFORM_DATA_DIR`` to move it; production settings (PostgreSQL,
real CRMs, alert webhook) arrive through the variables below, documented in the README.
Secrets are kept out of ``repr`` so a settings object can be logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DATA_DIR_ENV = "SYNC_PLATFORM_DATA_DIR"
MAPPINGS_DIR_ENV = "SYNC_PLATFORM_MAPPINGS_DIR"
CONFIG_ENV = "SYNC_PLATFORM_CONFIG"
WAREHOUSE_ENV = "SYNC_PLATFORM_WAREHOUSE"
POSTGRES_DSN_ENV = "SYNC_PLATFORM_POSTGRES_DSN"
DAGSTER_PG_URL_ENV = "SYNC_PLATFORM_DAGSTER_PG_URL"
SANDBOX_URL_ENV = "SYNC_PLATFORM_SANDBOX_URL"
SANDBOX_CA_ENV = "SYNC_PLATFORM_SANDBOX_CA"
WEBHOOK_URL_ENV = "SYNC_PLATFORM_ALERT_WEBHOOK_URL"
FIELD_KEYS_ENV = "SYNC_PLATFORM_FIELD_KEYS"
LOOKUP_KEY_ENV = "SYNC_PLATFORM_LOOKUP_KEY"
REDACT_LOGS_ENV = "SYNC_PLATFORM_REDACT_LOGS"
REVIEW_TOKEN_ENV = "SYNC_PLATFORM_REVIEW_TOKEN"
REVIEW_USERS_ENV = "SYNC_PLATFORM_REVIEW_USERS"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    mappings_dir: Path
    config_path: Path
    warehouse_kind: str = "duckdb"
    postgres_dsn: str | None = field(default=None, repr=False)
    dagster_pg_url: str | None = field(default=None, repr=False)
    sandbox_url: str | None = None
    sandbox_ca_file: str | None = None
    alert_webhook_url: str | None = field(default=None, repr=False)
    field_keys: str | None = field(default=None, repr=False)
    lookup_key: str | None = field(default=None, repr=False)
    redact_logs: bool = True
    # the review page (sync-platform review): a bearer token and/or user:password pairs; neither
    # set means local users only (loopback clients, the OS user decides)
    review_token: str | None = field(default=None, repr=False)
    review_users_text: str | None = field(default=None, repr=False)
    # dlt reads CRM credentials from SOURCES__<CRM>__... variables or .dlt/secrets.toml
    crm_credentials_in_env: bool = False

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

    @property
    def review_users(self) -> dict[str, str]:
        """``SYNC_PLATFORM_REVIEW_USERS`` as user -> password (read when the review page starts,
        so a malformed value stops only the page, not every command)."""
        return _users(self.review_users_text)

    @property
    def embedded(self) -> bool:
        """The embedded default (DuckDB file): the platform may create local key files for it."""
        return self.warehouse_kind == "duckdb"


def _text(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _users(text: str | None) -> dict[str, str]:
    """``user:password`` pairs separated by commas or whitespace; a pair without both is refused."""
    users: dict[str, str] = {}
    for pair in (text or "").replace(",", " ").split():
        name, sep, password = pair.partition(":")
        if not sep or not name or not password:
            raise ValueError(f"{REVIEW_USERS_ENV}: every entry is user:password")  # never echo the entry
        users[name] = password
    return users


def load_settings() -> Settings:
    """Read the environment now: tests and the demo change it between calls."""
    data_dir = Path(os.environ.get(DATA_DIR_ENV) or PROJECT_ROOT / "data").resolve()
    return Settings(
        data_dir=data_dir,
        mappings_dir=Path(os.environ.get(MAPPINGS_DIR_ENV) or PROJECT_ROOT / "data" / "mappings").resolve(),
        config_path=Path(os.environ.get(CONFIG_ENV) or PROJECT_ROOT / "data" / "sync.yaml"),
        warehouse_kind=(_text(WAREHOUSE_ENV) or "duckdb").lower(),
        postgres_dsn=_text(POSTGRES_DSN_ENV),
        dagster_pg_url=_text(DAGSTER_PG_URL_ENV),
        sandbox_url=_text(SANDBOX_URL_ENV),
        sandbox_ca_file=_text(SANDBOX_CA_ENV),
        alert_webhook_url=_text(WEBHOOK_URL_ENV),
        field_keys=_text(FIELD_KEYS_ENV),
        lookup_key=_text(LOOKUP_KEY_ENV),
        redact_logs=os.environ.get(REDACT_LOGS_ENV, "1") != "0",
        review_token=_text(REVIEW_TOKEN_ENV),
        review_users_text=_text(REVIEW_USERS_ENV),
        crm_credentials_in_env=any(name.startswith("SOURCES__") for name in os.environ),
    )
