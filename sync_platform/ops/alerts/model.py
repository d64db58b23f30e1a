"""What an alert is: a named finding, and the incident record it opens until it clears."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SEVERITIES = ("warning", "error")
RAISED, ESCALATED, RESOLVED = "raised", "escalated", "resolved"


@dataclass(frozen=True)
class Finding:
    """Something a monitor saw this time; ``key`` names the incident (one open alert per key)."""

    key: str
    severity: str
    finding: str
    message: str
    crm: str | None = None
    asset: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")
        if not self.key:
            raise ValueError("a finding needs a key")


@dataclass(frozen=True)
class Alert:
    """A row of ``ops.alerts``: open while ``resolved_at`` is None."""

    id: str
    key: str
    severity: str
    finding: str
    message: str
    crm: str | None
    asset: str | None
    details: dict[str, Any]
    first_seen: datetime
    last_seen: datetime
    occurrences: int
    resolved_at: datetime | None
    notified_at: datetime | None
    pending_notice: str | None = None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True)
class Notice:
    """What a sink must deliver: an alert ``raised``, ``escalated`` (warning → error) or ``resolved``."""

    kind: str
    alert: Alert

    @property
    def title(self) -> str:
        a = self.alert
        if self.kind == RESOLVED:
            return f"RESOLVED {a.finding}: {a.message}"
        return f"{a.severity.upper()} {a.finding}: {a.message}"


@dataclass
class AlertOutcome:
    """What one ``AlertBook.report`` did, by alert key."""

    raised: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    pending_notices: int = 0
    """Notices some sink has not accepted yet (kept and retried on the next report)."""
