"""Rate limits as each real CRM enforces them, on the sandbox clock.

HubSpot: a rolling 10-second window plus a daily cap (search has its own ~5/s limit).
Salesforce: a daily request budget reported in ``Sforce-Limit-Info`` on every response.
Dynamics: a 5-minute sliding window per user, answered with ``Retry-After``.
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass, field

from .clock import SandboxClock


class RollingWindow:
    """Counts events in the last ``seconds``; refuses the one that would exceed ``limit``."""

    def __init__(self, limit: int, seconds: float, clock: SandboxClock) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self._events: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        while self._events and self._events[0] <= now - self.seconds:
            self._events.popleft()

    def try_acquire(self) -> tuple[bool, int, float]:
        """(allowed, remaining after this request, seconds until a slot frees up)."""
        with self._lock:
            now = self.clock.now()
            self._trim(now)
            if len(self._events) >= self.limit:
                retry = self._events[0] + self.seconds - now
                return False, 0, max(retry, 0.0)
            self._events.append(now)
            return True, self.limit - len(self._events), 0.0

    def used(self) -> int:
        with self._lock:
            self._trim(self.clock.now())
            return len(self._events)

    def reset(self) -> None:
        with self._lock:
            self._events.clear()


@dataclass
class LimitDecision:
    allowed: bool
    policy: str = ""  # which limit refused: TEN_SECONDLY_ROLLING, DAILY, SEARCH, ...
    retry_after: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LimitConfig:
    hubspot_per_10s: int = 190
    hubspot_daily: int = 1_000_000
    hubspot_search_per_second: int = 5
    salesforce_daily: int = 100_000
    dynamics_per_5min: int = 6_000


class HubSpotLimits:
    def __init__(self, config: LimitConfig, clock: SandboxClock) -> None:
        self.config = config
        self.window = RollingWindow(config.hubspot_per_10s, 10.0, clock)
        self.daily = RollingWindow(config.hubspot_daily, 86_400.0, clock)
        self.search = RollingWindow(config.hubspot_search_per_second, 1.0, clock)

    def configure(
        self, per_10s: int | None = None, daily: int | None = None, search_per_second: int | None = None
    ):
        if per_10s is not None:
            self.window.limit = self.config.hubspot_per_10s = per_10s
        if daily is not None:
            self.daily.limit = self.config.hubspot_daily = daily
        if search_per_second is not None:
            self.search.limit = self.config.hubspot_search_per_second = search_per_second

    def check(self, is_search: bool) -> LimitDecision:
        if is_search:  # search is limited separately and carries no rate-limit headers
            ok, _, retry = self.search.try_acquire()
            return LimitDecision(ok, "SECONDLY", retry)
        ok_day, day_left, retry_day = self.daily.try_acquire()
        if not ok_day:
            return LimitDecision(False, "DAILY", retry_day, self._headers(0, 0))
        ok, left, retry = self.window.try_acquire()
        headers = self._headers(left, day_left)
        return LimitDecision(ok, "" if ok else "TEN_SECONDLY_ROLLING", retry, headers)

    def _headers(self, left: int, day_left: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Max": str(self.window.limit),
            "X-HubSpot-RateLimit-Remaining": str(left),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Daily": str(self.daily.limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(day_left),
        }

    def reset(self) -> None:
        for w in (self.window, self.daily, self.search):
            w.reset()


class SalesforceLimits:
    def __init__(self, config: LimitConfig, clock: SandboxClock) -> None:
        self.config = config
        self.daily = RollingWindow(config.salesforce_daily, 86_400.0, clock)
        self._extra_used = 0

    def configure(self, daily: int | None = None, used: int | None = None) -> None:
        if daily is not None:
            self.daily.limit = self.config.salesforce_daily = daily
        if used is not None:  # pretend other integrations already spent part of today's budget
            self.daily.reset()
            self._extra_used = used

    def check(self) -> LimitDecision:
        limit = self.daily.limit
        if self.daily.used() + self._extra_used >= limit:
            return LimitDecision(False, "REQUEST_LIMIT_EXCEEDED", 0.0, self.headers())
        self.daily.try_acquire()
        return LimitDecision(True, "", 0.0, self.headers())

    def headers(self) -> dict[str, str]:
        used = min(self.daily.used() + self._extra_used, self.daily.limit)
        return {"Sforce-Limit-Info": f"api-usage={used}/{self.daily.limit}"}

    def reset(self) -> None:
        self.daily.reset()
        self._extra_used = 0


class DynamicsLimits:
    def __init__(self, config: LimitConfig, clock: SandboxClock) -> None:
        self.config = config
        self.window = RollingWindow(config.dynamics_per_5min, 300.0, clock)

    def configure(self, per_5min: int | None = None) -> None:
        if per_5min is not None:
            self.window.limit = self.config.dynamics_per_5min = per_5min

    def check(self) -> LimitDecision:
        ok, _, retry = self.window.try_acquire()
        if ok:
            return LimitDecision(True)
        return LimitDecision(False, "NumberOfRequests", retry, {"Retry-After": str(max(1, math.ceil(retry)))})

    def reset(self) -> None:
        self.window.reset()
