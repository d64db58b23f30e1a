"""The sandbox's clock: wall time plus an offset, which tests can freeze and advance.

Token expiry, rate-limit windows, fault windows and record timestamps all read this
clock, so a test can move past a window without sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class SandboxClock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen_at: float | None = None
        self._last_ms = 0

    def now(self) -> float:
        """Seconds since the epoch, as the emulated CRMs see it."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return time.time() + self._offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def stamp_ms(self) -> int:
        """A record timestamp: never earlier than the previous one while the clock runs.

        Real CRMs stamp with millisecond precision; two writes in the same millisecond share a
        stamp, which is exactly the tie a strict ``>`` cursor loses. A frozen clock keeps them equal.
        """
        with self._lock:
            now = self._frozen_at if self._frozen_at is not None else time.time() + self._offset
            ms = int(now * 1000)
            if self._frozen_at is None and ms < self._last_ms:
                ms = self._last_ms
            self._last_ms = max(self._last_ms, ms)
            return ms

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=UTC)

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def advance(self, seconds: float) -> float:
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds
        return self.now()

    def freeze(self, at: float | None = None) -> float:
        with self._lock:
            self._frozen_at = at if at is not None else time.time() + self._offset
            return self._frozen_at

    def unfreeze(self) -> float:
        """Resume running from the frozen instant (time does not jump)."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - time.time()
                self._frozen_at = None
        return self.now()
