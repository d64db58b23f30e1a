"""Alerts: named findings become incidents in ``ops.alerts`` (one open per key), told to pluggable sinks.

Monitors (the sensors of ``defs/monitor``, reconciliation, the quality gate) call
``AlertBook(warehouse).report(scope, findings)`` with everything they currently see; the book
raises, de-duplicates, escalates and resolves, and delivers notices at least once.
"""

from __future__ import annotations

from sync_platform.ops.alerts.book import TABLE, AlertBook
from sync_platform.ops.alerts.model import (
    ESCALATED,
    RAISED,
    RESOLVED,
    SEVERITIES,
    Alert,
    AlertOutcome,
    Finding,
    Notice,
)
from sync_platform.ops.alerts.sinks import (
    AlertDeliveryError,
    AlertSink,
    EmailFileSink,
    LogSink,
    WebhookSink,
    sinks_from_config,
    slack_message,
)

__all__ = [
    "ESCALATED",
    "RAISED",
    "RESOLVED",
    "SEVERITIES",
    "TABLE",
    "Alert",
    "AlertBook",
    "AlertDeliveryError",
    "AlertOutcome",
    "AlertSink",
    "EmailFileSink",
    "Finding",
    "LogSink",
    "Notice",
    "WebhookSink",
    "sinks_from_config",
    "slack_message",
]
