"""Fault injection: the failures integrations meet in production, on demand.

A fault matches requests by CRM, method and path substring; it can skip the first ``after``
matching requests (fail page 3 of a pagination), affect the next ``count`` requests, or last
until an instant on the sandbox clock (an outage of N seconds).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass
from typing import Literal

from .clock import SandboxClock

FaultKind = Literal[
    "error",
    "timeout",
    "slow",
    "outage",
    "malformed",
    "rate_limit",
    "expire_tokens",
    "revoke_tokens",
    "corrupt_records",
    "lost_response",
]
FAULT_KINDS: tuple[str, ...] = (
    "error",
    "timeout",
    "slow",
    "outage",
    "malformed",
    "rate_limit",
    "expire_tokens",
    "revoke_tokens",
    "corrupt_records",
    "lost_response",
)
CORRUPT_VALUE = "#corrupt#"  # not a valid datetime, number or boolean in any CRM's format


@dataclass
class Fault:
    """One injected failure.

    kinds: ``error`` (answer ``status``, default 500), ``timeout`` (hold the response ``delay``
    seconds, default 30, then 504), ``slow`` (hold ``delay`` seconds, then answer normally),
    ``outage`` (503 for ``seconds`` from now), ``malformed`` (a 200 whose body is cut short),
    ``rate_limit`` (the CRM's own 429/403 limit response), ``expire_tokens``/``revoke_tokens``
    (expire or revoke every access token, then handle the request, which therefore gets 401),
    ``corrupt_records`` (answer normally, but with ``field`` of the next ``count`` records served
    set to ``value``, default ``#corrupt#``; ``""`` blanks it: one bad record in a good page).
    For ``corrupt_records`` ``count`` counts records, not requests. ``lost_response`` handles the
    request (a write is applied) and then holds the answer ``delay`` seconds (default 30) and
    answers 504: the CRM did it, the caller cannot know (a write must be safe to send again).
    """

    kind: str
    crm: str = "*"
    path: str | None = None
    method: str | None = None
    status: int | None = None
    delay: float | None = None
    count: int | None = None
    after: int = 0
    seconds: float | None = None
    field: str | None = None
    value: str | None = None
    id: int = 0
    until: float | None = None
    seen: int = 0
    fired: int = 0

    def matches(self, crm: str, method: str, path: str, now: float) -> bool:
        if self.crm not in ("*", crm):
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path and self.path not in path:
            return False
        return not (self.until is not None and now >= self.until)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count


class FaultInjector:
    def __init__(self, clock: SandboxClock) -> None:
        self.clock = clock
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if fault.kind == "outage" and fault.seconds is None and fault.count is None:
            raise ValueError("an outage needs 'seconds' (how long it lasts) or 'count'")
        if fault.kind == "corrupt_records" and not fault.field:
            raise ValueError("corrupt_records needs 'field' (the record field to corrupt)")
        with self._lock:
            fault.id = next(self._ids)
            if fault.seconds is not None:
                fault.until = self.clock.now() + fault.seconds
            if fault.kind in ("expire_tokens", "revoke_tokens", "corrupt_records") and fault.count is None:
                fault.count = 1
            self._faults.append(fault)
        return fault

    def take(self, crm: str, method: str, path: str) -> Fault | None:
        """The first active fault matching this request, counted as fired; None if none."""
        now = self.clock.now()
        with self._lock:
            self._faults = [f for f in self._faults if not f.exhausted and not (f.until and now >= f.until)]
            for fault in self._faults:
                if not fault.matches(crm, method, path, now):
                    continue
                fault.seen += 1
                if fault.seen <= fault.after:
                    continue
                if fault.kind != "corrupt_records":  # that one counts the records it corrupts
                    fault.fired += 1
                return fault
        return None

    def corrupt(self, fault: Fault, holders: list[dict]) -> int:
        """Set ``fault.field`` in up to the records the fault has left; returns how many it changed."""
        value = CORRUPT_VALUE if fault.value is None else fault.value
        changed = 0
        with self._lock:
            for holder in holders:
                if fault.exhausted:
                    break
                if fault.field in holder:
                    holder[fault.field] = value
                    fault.fired += 1
                    changed += 1
        return changed

    def clear(self, fault_id: int | None = None) -> int:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]
            return before - len(self._faults)

    def list(self) -> list[dict]:
        with self._lock:
            return [asdict(f) for f in self._faults]


class RequestStats:
    """Requests served per (CRM, endpoint, status), so tests can assert how many calls a sync made."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        self._lock = threading.Lock()

    def record(self, crm: str, endpoint: str, status: int) -> None:
        key = (crm, endpoint, status)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def rows(self) -> list[dict]:
        with self._lock:
            return [
                {"crm": c, "endpoint": e, "status": s, "count": n}
                for (c, e, s), n in sorted(self._counts.items())
            ]

    def total(self, crm: str | None = None, endpoint: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (c, e, s), n in self._counts.items()
                if (crm is None or c == crm)
                and (endpoint is None or e == endpoint)
                and (status is None or s == status)
            )

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
