"""The one HTTP policy every CRM source uses.

- a client-side rate limiter sized from config, so a sync runs just under the CRM's ceiling
  instead of bouncing off it;
- retries with exponential backoff and jitter (tenacity) for 429, 5xx, timeouts and cut-short
  pages, honouring ``Retry-After`` and HubSpot's window headers;
- one token refresh and re-try on 401;
- Salesforce's ``Sforce-Limit-Info`` budget: stop (loudly) before the daily budget falls under
  a reserve;
- counters for every request, retry and 429, read by the assets' metadata;
- the CRM's own clock (each response's ``Date``), against which a record's stamp is "in the future".

Failures surface as ``CrmRequestError`` with an ``ErrorKind``; URLs in messages never carry
query strings (they may hold ids or emails) and no header is ever logged.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from sync_platform.core.errors import BudgetExhausted, CrmRequestError, ErrorKind, RetryableError
from sync_platform.ingest.sources.auth import TokenProvider

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpPolicy:
    """Retry, timeout and throttling settings of one CRM connection."""

    max_attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    timeout: float = 60.0
    max_requests: int | None = None  # client-side ceiling: this many requests ...
    per_seconds: float = 10.0  # ... per this many seconds
    budget_reserve: int = 0  # Salesforce: keep this many daily requests for everyone else
    headroom: float = 0.97  # pace at this share of the ceiling: network jitter must not tip us over it
    # a Retry-After longer than this fails the request now (a dead letter, the cursor unmoved, the
    # next run resumes) instead of holding the warehouse's one write slot for minutes
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_requests is not None and (self.max_requests < 1 or self.per_seconds <= 0):
            raise ValueError("max_requests must be >= 1 and per_seconds > 0")
        if not 0 < self.headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")


@dataclass
class RequestStats:
    """What a sync cost: reported as asset metadata and in the demo summary."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    auth_refreshes: int = 0
    throttle_wait_seconds: float = 0.0
    errors: collections.Counter = field(default_factory=collections.Counter)
    budget_used: int | None = None
    budget_limit: int | None = None
    server_time: datetime | None = None  # the CRM's clock at its latest response (``Date``), not ours

    def as_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "retries": self.retries,
            "http_429": self.rate_limited,
            "auth_refreshes": self.auth_refreshes,
            "throttle_wait_s": round(self.throttle_wait_seconds, 3),
            "errors_by_kind": dict(self.errors),
        }
        if self.budget_limit is not None:
            out["api_budget_used"] = self.budget_used
            out["api_budget_limit"] = self.budget_limit
        return out


class SlidingWindowLimiter:
    """At most ``limit`` requests in any ``seconds`` window, sent evenly spaced.

    Spacing (``seconds / limit / headroom`` apart) instead of bursting the whole window at once:
    a burst followed by a wait lets arrival jitter put one request too many into the server's
    window, which is exactly the 429 a client-side limiter exists to avoid.
    """

    def __init__(
        self,
        limit: int,
        seconds: float,
        headroom: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.seconds = seconds
        self.interval = seconds / limit / headroom
        self._clock = clock
        self._sleep = sleep
        self._events: collections.deque[float] = collections.deque()
        self._next_at = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take a slot; returns how long it waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._events and self._events[0] <= now - self.seconds:
                    self._events.popleft()
                delay = max(self._next_at - now, 0.0)
                if len(self._events) >= self.limit:
                    delay = max(delay, self._events[0] + self.seconds - now)
                if delay <= 0:
                    self._events.append(now)
                    self._next_at = now + self.interval
                    return waited
            self._sleep(delay)
            waited += delay

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` after the server said 'slow down' despite us."""
        with self._lock:
            self._next_at = max(self._next_at, self._clock() + seconds)


def _safe_path(url: str) -> str:
    return urlsplit(url).path


class CrmHttpClient:
    """A ``requests`` session wrapped in the shared policy, for one CRM."""

    def __init__(
        self,
        crm: str,
        auth: TokenProvider | None,
        policy: HttpPolicy | None = None,
        verify: str | bool = True,
        session: requests.Session | None = None,
        stats: RequestStats | None = None,
    ) -> None:
        self.crm = crm
        self.auth = auth
        self.policy = policy or HttpPolicy()
        self.session = session or requests.Session()
        # passed on every request: a session-level verify loses to REQUESTS_CA_BUNDLE in requests
        self.verify = verify
        self.stats = stats or RequestStats()
        self.limiter = (
            SlidingWindowLimiter(self.policy.max_requests, self.policy.per_seconds, self.policy.headroom)
            if self.policy.max_requests
            else None
        )

    # ------------------------------------------------------------------ public
    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        expect_json: bool = True,
    ) -> requests.Response:
        """Send with retries; return the successful response or raise ``CrmRequestError``."""
        path = _safe_path(url)
        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_attempts) | self._asked_to_wait_too_long,
            wait=self._wait,
            retry=retry_if_exception_type(RetryableError),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return self._send_once(method, url, path, params, json, headers, expect_json, attempts)
        except RetryableError as exc:
            self.stats.errors[exc.kind.value] += 1
            raise CrmRequestError(
                self.crm, exc.kind, exc.detail, method=method, path=path, status=exc.status, attempts=attempts
            ) from None
        except CrmRequestError as exc:
            self.stats.errors[exc.kind.value] += 1
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs).json()

    # ------------------------------------------------------------------ internals
    def _send_once(
        self,
        method: str,
        url: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        expect_json: bool,
        attempt: int,
    ) -> requests.Response:
        self._check_budget(method, path)
        refreshed = False
        while True:
            if self.limiter is not None:
                self.stats.throttle_wait_seconds += self.limiter.acquire()
            all_headers = dict(headers or {})
            if self.auth is not None:
                all_headers["Authorization"] = f"Bearer {self.auth.token()}"
            self.stats.requests += 1
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    headers=all_headers,
                    timeout=self.policy.timeout,
                    verify=self.verify,
                )
            except requests.Timeout:
                raise RetryableError(
                    self.crm,
                    ErrorKind.TIMEOUT,
                    "request timed out",
                    method=method,
                    path=path,
                    attempts=attempt,
                ) from None
            except requests.ConnectionError as exc:
                raise RetryableError(
                    self.crm,
                    ErrorKind.TIMEOUT,
                    f"connection failed ({type(exc).__name__})",
                    method=method,
                    path=path,
                    attempts=attempt,
                ) from None
            self._read_budget(response)
            self._read_server_time(response)
            if (
                response.status_code == 401
                and self.auth is not None
                and self.auth.can_refresh
                and not refreshed
            ):
                # one refresh and re-try, which does not count as a retry attempt
                self.auth.refresh()
                self.stats.auth_refreshes += 1
                refreshed = True
                continue
            break
        self._raise_for_status(response, method, path, attempt)
        if expect_json and response.status_code != 204:
            try:
                response.json()
            except ValueError:
                raise RetryableError(
                    self.crm,
                    ErrorKind.PARSE,
                    "response body is not valid JSON",
                    method=method,
                    path=path,
                    status=response.status_code,
                    attempts=attempt,
                ) from None
        return response

    def _raise_for_status(self, response: requests.Response, method: str, path: str, attempt: int) -> None:
        status = response.status_code
        if status < 400 or status == 300:
            return
        message = _error_message(response)
        if status == 429:
            self.stats.rate_limited += 1
            retry_after = _retry_after(response)
            if self.limiter is not None and retry_after:
                self.limiter.pause(min(retry_after, self.policy.max_retry_after))
            raise RetryableError(
                self.crm,
                ErrorKind.RATE_LIMIT,
                message,
                method=method,
                path=path,
                status=status,
                attempts=attempt,
                retry_after=retry_after,
            )
        if status == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
            raise BudgetExhausted(
                self.crm,
                ErrorKind.BUDGET,
                f"daily API request limit exceeded: {message}",
                method=method,
                path=path,
                status=status,
                attempts=attempt,
            )
        if status == 401 or status == 403:
            raise CrmRequestError(
                self.crm, ErrorKind.AUTH, message, method=method, path=path, status=status, attempts=attempt
            )
        if status >= 500:
            raise RetryableError(
                self.crm,
                ErrorKind.SERVER_ERROR,
                message,
                method=method,
                path=path,
                status=status,
                attempts=attempt,
                retry_after=_retry_after(response),
            )
        raise CrmRequestError(
            self.crm,
            ErrorKind.CLIENT_ERROR,
            message,
            method=method,
            path=path,
            status=status,
            attempts=attempt,
        )

    def _read_budget(self, response: requests.Response) -> None:
        info = response.headers.get("Sforce-Limit-Info")
        if info and "api-usage=" in info:
            used, _, limit = info.split("api-usage=", 1)[1].split(",")[0].partition("/")
            try:
                self.stats.budget_used, self.stats.budget_limit = int(used), int(limit)
            except ValueError:
                log.warning("%s: unreadable Sforce-Limit-Info header", self.crm)

    def _read_server_time(self, response: requests.Response) -> None:
        """The CRM's clock from ``Date``, in whole seconds rounded down: its "now" is up to a second later."""
        value = response.headers.get("Date")
        if not value:
            return
        try:
            stamp = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            log.warning("%s: unreadable Date header", self.crm)
            return
        utc = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
        self.stats.server_time = utc + timedelta(seconds=1)

    def _check_budget(self, method: str, path: str) -> None:
        reserve = self.policy.budget_reserve
        used, limit = self.stats.budget_used, self.stats.budget_limit
        if reserve and used is not None and limit is not None and limit - used <= reserve:
            raise BudgetExhausted(
                self.crm,
                ErrorKind.BUDGET,
                f"stopping: only {limit - used} of {limit} daily API requests left, reserve is {reserve}",
                method=method,
                path=path,
            )

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(initial=self.policy.backoff_initial, max=self.policy.backoff_max)(
            state
        )
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(backoff, retry_after) if retry_after else backoff

    def _asked_to_wait_too_long(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return bool(retry_after and retry_after > self.policy.max_retry_after)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: retrying after attempt %d: %s", self.crm, state.attempt_number, exc)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value:
        try:
            return float(value)
        except ValueError:
            return None
    if response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds") and response.status_code == 429:
        return 1.0  # HubSpot's rolling window frees a slot as soon as the oldest request ages out
    return None


def _error_message(response: requests.Response) -> str:
    """The CRM's own error text (Salesforce arrays, HubSpot and Dataverse objects), trimmed."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or f"HTTP {response.status_code}"
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):
            body = body["error"]
        code = body.get("errorCode") or body.get("category") or body.get("code") or body.get("policyName")
        message = body.get("message") or body.get("error_description") or body.get("error")
        return f"{code}: {message}" if code else str(message)
    return str(body)[:200]
