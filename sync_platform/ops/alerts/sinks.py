"""Where alert notices go: a structured log line, a Slack-compatible webhook, an ``.eml`` file.

A sink either delivers a notice or raises ``AlertDeliveryError``; the alert book keeps
undelivered notices and offers them again on the next report, so an unreachable webhook
delays a notification but never loses it. Every rendered text passes PII redaction.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import tenacity

from sync_platform.core.config import load_sync_config
from sync_platform.core.settings import load_settings
from sync_platform.ops.alerts.model import ESCALATED, RESOLVED, Notice
from sync_platform.security.redaction import redact_text

LOGGER = logging.getLogger("sync_platform.alerts")  # a stable name operators route by
_COLORS = {"warning": "#e8a317", "error": "#d40e0d", RESOLVED: "#2eb67d"}


class AlertDeliveryError(RuntimeError):
    """A sink could not deliver a notice; the message never carries a secret (URL, token)."""


@runtime_checkable
class AlertSink(Protocol):
    name: str

    def send(self, notice: Notice) -> None:
        """Deliver ``notice`` or raise ``AlertDeliveryError``."""


def notice_payload(notice: Notice) -> dict[str, Any]:
    """The notice as plain data (the log line; the facts every sink renders)."""
    a = notice.alert
    return {
        "notice": notice.kind,
        "key": a.key,
        "severity": a.severity,
        "finding": a.finding,
        "message": redact_text(a.message),
        "crm": a.crm,
        "asset": a.asset,
        "first_seen": a.first_seen.isoformat(),
        "last_seen": a.last_seen.isoformat(),
        "occurrences": a.occurrences,
        "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None,
        "details": json.loads(redact_text(json.dumps(a.details, default=str, sort_keys=True))),
        "alert_id": a.id,
    }


class LogSink:
    """One JSON line per notice on the ``sync_platform.alerts`` logger.

    The line is redacted by the log-record factory too.
    """

    name = "log"

    def __init__(self, logger: logging.Logger = LOGGER) -> None:
        self.logger = logger

    def send(self, notice: Notice) -> None:
        level = (
            logging.INFO
            if notice.kind == RESOLVED
            else (logging.ERROR if notice.alert.severity == "error" else logging.WARNING)
        )
        self.logger.log(level, json.dumps(notice_payload(notice), default=str, sort_keys=True))


def slack_message(notice: Notice) -> dict[str, Any]:
    """Slack's incoming-webhook shape: ``text`` (fallback), ``blocks`` and a coloured attachment."""
    data = notice_payload(notice)
    title = redact_text(notice.title)
    emoji = {"warning": ":warning:", "error": ":rotating_light:"}.get(notice.alert.severity, "")
    if notice.kind == RESOLVED:
        emoji = ":white_check_mark:"
    elif notice.kind == ESCALATED:
        title = f"ESCALATED {title}"
    where = " · ".join(str(v) for v in (data["crm"], data["asset"]) if v)
    context = (
        f"key `{data['key']}` · first seen {data['first_seen']} · last seen {data['last_seen']} · "
        f"{data['occurrences']} occurrence(s)"
    )
    facts = [
        {"title": name, "value": str(data[name]), "short": True}
        for name in ("severity", "finding", "crm", "asset", "key")
        if data[name] is not None
    ]
    details = json.dumps(data["details"], sort_keys=True)
    if len(details) > 2000:
        details = details[:2000] + " …"
    return {
        "text": f"{emoji} {title}".strip(),
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{emoji} *{title}*" + (f"\n{where}" if where else "")},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
        "attachments": [
            {
                "color": _COLORS[RESOLVED if notice.kind == RESOLVED else notice.alert.severity],
                "fallback": title,
                "fields": facts,
                "text": f"```{details}```" if data["details"] else "",
            }
        ],
    }


class _Retryable(Exception):
    pass


class WebhookSink:
    """POST a Slack-compatible JSON message; retries timeouts, 429 and 5xx a few times, briefly.

    The URL is a secret (Slack webhook URLs carry their token in the path): it comes from the
    environment and appears in no log line, error or stored row.
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        max_attempts: int = 3,
        backoff_seconds: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._transport = transport

    def __repr__(self) -> str:
        return "WebhookSink(url=<secret>)"

    def send(self, notice: Notice) -> None:
        body = slack_message(notice)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_exponential(multiplier=self.backoff_seconds, max=5 * self.backoff_seconds),
            retry=tenacity.retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
                for attempt in retrying:
                    with attempt:
                        self._post(client, body)
        except _Retryable as exc:
            raise AlertDeliveryError(f"webhook: {exc} after {self.max_attempts} attempt(s)") from None

    def _post(self, client: httpx.Client, body: dict) -> None:
        try:
            response = client.post(self._url, json=body)
        except httpx.TransportError as exc:  # str(exc) may name the URL: keep only the class
            raise _Retryable(type(exc).__name__) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if (
            response.status_code >= 300
        ):  # a redirect is not a delivery, and following it could leak the notice
            raise AlertDeliveryError(f"webhook: HTTP {response.status_code} (not retried)")


class EmailFileSink:
    """Write each notice as an RFC 5322 message (``.eml``) into an outbox folder: email for local use.

    A mail relay (or a person with a mail client) can pick the files up; tests parse them back.
    """

    name = "email"

    def __init__(self, outbox: Path, to: Sequence[str], sender: str = "sync-platform@localhost") -> None:
        self.outbox = Path(outbox)
        self.to = list(to)
        self.sender = sender

    def send(self, notice: Notice) -> None:
        data = notice_payload(notice)
        message = EmailMessage()
        message["Subject"] = f"[sync_platform] {redact_text(notice.title)}"[:250]
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain="sync-platform.local")
        message["X-Sync-Platform-Alert-Key"] = data["key"]
        message["X-Sync-Platform-Notice"] = notice.kind
        lines = [redact_text(notice.title), ""]
        lines += [
            f"{name:12} {data[name]}"
            for name in (
                "severity",
                "finding",
                "crm",
                "asset",
                "key",
                "first_seen",
                "last_seen",
                "occurrences",
                "resolved_at",
            )
            if data[name] is not None
        ]
        if data["details"]:
            lines += ["", "details:", json.dumps(data["details"], indent=2, sort_keys=True)]
        message.set_content("\n".join(lines) + "\n")
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            target = self.outbox / f"{stamp}-{notice.kind}-{notice.alert.id[:8]}-{uuid.uuid4().hex[:6]}.eml"
            partial = target.with_suffix(".eml.part")
            partial.write_bytes(bytes(message))
            partial.replace(target)  # a reader never sees half a message
        except OSError as exc:
            raise AlertDeliveryError(f"email: cannot write to the outbox: {exc.strerror}") from None


def sinks_from_config(config=None, outbox: Path | None = None) -> list[AlertSink]:
    """The sinks ``alerts.sinks`` in ``data/sync.yaml`` names; the webhook only when its URL is set."""
    cfg = config or load_sync_config().alerts
    sinks: list[AlertSink] = []
    for name in cfg.sinks:
        if name == "log":
            sinks.append(LogSink())
        elif name == "webhook":
            url = load_settings().alert_webhook_url
            if url:
                sinks.append(
                    WebhookSink(
                        url, timeout=cfg.webhook_timeout_seconds, max_attempts=cfg.webhook_max_attempts
                    )
                )
        elif name == "email":
            sinks.append(
                EmailFileSink(
                    outbox or load_settings().data_dir / "alerts" / "outbox", cfg.email_to, cfg.email_from
                )
            )
    return sinks
