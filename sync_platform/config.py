"""The sync configuration file (``data/sync.yaml``): schedules and HTTP policy per CRM.

Validated at load time with pydantic; a bad file fails before anything runs, with a message
naming the file, the key and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .settings import PROJECT_ROOT

CRMS = ("salesforce", "hubspot", "dynamics")
CrmName = Literal["salesforce", "hubspot", "dynamics"]
DEFAULT_PATH = PROJECT_ROOT / "data" / "sync.yaml"


class ConfigError(ValueError):
    """A configuration file is malformed; the message names the file and the field."""


class CrmSyncConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    schedule_minutes: int = Field(15, description="Incremental sync interval, 1 minute .. 24 hours.")
    look_back_seconds: float = Field(300.0, ge=0, le=7 * 86_400)
    hard_delete: bool = False
    max_attempts: int = Field(6, ge=1, le=20)
    backoff_initial_seconds: float = Field(0.5, gt=0, le=60)
    backoff_max_seconds: float = Field(30.0, gt=0, le=600)
    page_size: int | None = Field(None, ge=1, le=5000, description="Salesforce batchSize (200..2000), "
                                  "Dynamics odata.maxpagesize (..5000); HubSpot pages are fixed.")
    search_requests_per_second: int = Field(5, ge=1, le=100, description="HubSpot search ceiling (~5/s).")
    requests_per_window: int | None = Field(None, ge=1)
    window_seconds: float = Field(10.0, gt=0)
    budget_reserve: int = Field(0, ge=0)
    change_tracking: Literal["auto", "on", "off"] = Field("auto", description=(
        "Dynamics only. auto: use change tracking, and fall back to modifiedon (remembered per table) when "
        "a table is not tracked; on: fail if it is not; off: always read modifiedon (deletes go unseen)."))
    owners: list[str] = Field(default_factory=lambda: ["team:revops"])

    @field_validator("schedule_minutes")
    @classmethod
    def _schedulable(cls, minutes: int) -> int:
        if not 1 <= minutes <= 1440:
            raise ValueError(f"must be between 1 (minute) and 1440 (24 hours), got {minutes}")
        if not (60 % minutes == 0 or (minutes % 60 == 0 and 1440 % minutes == 0)):
            raise ValueError(f"{minutes} does not divide an hour or a day evenly "
                             "(use e.g. 1, 5, 15, 30, 60, 120, 360, 720 or 1440)")
        return minutes

    @property
    def cron(self) -> str:
        m = self.schedule_minutes
        if m < 60:
            return "* * * * *" if m == 1 else f"*/{m} * * * *"
        hours = m // 60
        return "0 0 * * *" if hours == 24 else ("0 * * * *" if hours == 1 else f"0 */{hours} * * *")


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_rejected_share: float = Field(0.01, ge=0, le=1, description=(
        "Blast-radius gate: above this share of rejected rows in a run, the canonical table is not "
        "replaced and downstream assets stop."))


class SyncConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crms: dict[CrmName, CrmSyncConfig] = Field(default_factory=dict)
    quality: QualityConfig = Field(default_factory=QualityConfig)

    def crm(self, name: str) -> CrmSyncConfig:
        return self.crms.get(name) or CrmSyncConfig()  # type: ignore[call-arg]


def load_sync_config(path: Path | None = None) -> SyncConfig:
    path = Path(path or os.environ.get("SYNC_PLATFORM_CONFIG", DEFAULT_PATH))
    try:
        raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return SyncConfig.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
