"""The error taxonomy every failed CRM call or record is classified into (dead letters, metrics, alerts).

Shared vocabulary of the sources that raise these and the ops tables that record them, so neither
imports the other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class ErrorKind(StrEnum):
    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    CLIENT_ERROR = "client_error"
    PARSE = "parse"
    VALIDATION = "validation"
    BUDGET = "budget"  # the daily API budget would fall under the configured reserve


class CrmRequestError(Exception):
    """A CRM call that failed for good (after retries, or not retryable).

    The message names the CRM, the request (method and path, never tokens or secrets), the
    kind, the HTTP status and how many attempts were made, so a failed run says why.
    """

    def __init__(
        self,
        crm: str,
        kind: ErrorKind,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        self.crm = crm
        self.kind = kind
        self.method = method
        self.path = path
        self.status = status
        self.attempts = attempts
        self.retry_after = retry_after
        self.detail = message
        where = f" {method} {path}" if method else ""
        status_txt = f" HTTP {status}" if status else ""
        super().__init__(f"{crm}{where} failed ({kind}{status_txt}) after {attempts} attempt(s): {message}")


class BudgetExhausted(CrmRequestError):
    """Stopping before the CRM's daily request budget falls under the reserve: fail loudly."""


class RetryableError(CrmRequestError):
    """A failure worth retrying (429, 5xx, timeouts, a cut-short page)."""


@dataclass(frozen=True)
class RejectedRecord:
    """A record left out of its page because it cannot be loaded as declared.

    ``kind`` is ``validation`` (no primary key) or ``parse`` (a value that does not convert to
    its column's declared type); ``reason`` names the column and type, never the value.
    ``payload`` is the record as the CRM sent it (keep it out of logs: it holds PII).
    """

    record_id: str | None
    kind: str
    reason: str
    payload: Mapping
