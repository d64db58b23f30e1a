"""Record store of one emulated CRM object: lazily generated base records plus an overlay.

Base record ``i`` comes from the generator on demand; created, changed and deleted records
live in an overlay keyed by index. Two indexes over the overlay serve the reads every CRM
offers: a sorted ``(system stamp, index)`` list for cursor queries, and an append-only
change log (version, index) for Dynamics-style change tracking.

Automations emulate the CRM's own triggers and workflows: after a client creates or updates a
record through a CRM API (``client=True``; never an admin write), each sets its field on that
record ``times`` times, every firing a change of its own (stamp, version, change-log entry).
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sortedcontainers import SortedList

from .clock import SandboxClock
from .generator import RecordGenerator
from .schema import ObjectSpec

# meta keys are double-underscored: Dynamics field names themselves start with one underscore
VERSION, DELETED, DELETED_AT = "__version", "__deleted", "__deleted_at"

ChangeMode = Literal["user", "automation", "frozen"]
"""How a change stamps the record.

``user`` bumps every timestamp; ``automation`` bumps only the system stamp (as a Salesforce
flow or integration user leaves ``LastModifiedDate`` alone); ``frozen`` changes content and
bumps no timestamp at all — the admin-script incident that makes cursor-based syncs go blind.
"""


MAX_AUTOMATION_TIMES = 100


class RecordNotFound(KeyError):
    pass


@dataclass(frozen=True)
class Automation:
    """A trigger or workflow on one object: after each client write, ``field = value``, ``times`` times.

    ``times`` > 1 emulates a trigger that fires again on its own update (Salesforce triggers
    re-entering, a HubSpot workflow and a Power Automate flow both listening to the same change):
    the record changes several times for one write, which a sync must absorb idempotently.
    """

    id: int
    field: str
    value: Any
    times: int = 1


@dataclass
class ChangeResult:
    index: int
    record: dict
    created: bool


class ObjectStore:
    def __init__(
        self, spec: ObjectSpec, generator: RecordGenerator, clock: SandboxClock, lock: threading.RLock
    ) -> None:
        self.spec = spec
        self.gen = generator
        self.clock = clock
        self.lock = lock
        self.base_count = generator.count
        self.created_count = 0
        self.overlay: dict[int, dict] = {}
        self._by_stamp: SortedList = SortedList()  # (system stamp ms, index) of overlay records
        self._changes: list[tuple[int, int]] = []  # (version, index), append-only
        self.version = 0
        self.listeners: list[Callable[[str, dict], None]] = []
        self.automations: list[Automation] = []
        self._automation_ids = 0

    # ------------------------------------------------------------------ reads
    @property
    def total(self) -> int:
        return self.base_count + self.created_count

    def get(self, index: int) -> dict | None:
        """The current record (deleted ones included, flagged), or None if it never existed."""
        if index < 0 or index >= self.total:
            return None
        rec = self.overlay.get(index)
        if rec is not None:
            return rec
        rec = self.gen.record(index)
        rec[VERSION] = 0
        return rec

    def get_by_id(self, record_id: str) -> tuple[int, dict] | None:
        index = self.spec.parse_id(record_id)
        if index is None:
            return None
        rec = self.get(index)
        return None if rec is None else (index, rec)

    def stamp_of(self, index: int) -> int:
        rec = self.overlay.get(index)
        return rec[self.spec.system_stamp] if rec is not None else self.gen.base_stamp(index)

    def iter_by_index(
        self, start: int = 0, include_deleted: bool = False, only_deleted: bool = False
    ) -> Iterator[tuple[int, dict]]:
        """Records in id order (creation order), starting at index ``start``."""
        for i in range(max(0, start), self.total):
            rec = self.get(i)
            if rec is None:
                continue
            deleted = rec.get(DELETED, False)
            if only_deleted and not deleted:
                continue
            if deleted and not (include_deleted or only_deleted):
                continue
            yield i, rec

    def iter_by_stamp(
        self,
        after: tuple[int, int] | None = None,
        min_stamp: int | None = None,
        include_deleted: bool = False,
        only_deleted: bool = False,
        descending: bool = False,
    ) -> Iterator[tuple[int, dict]]:
        """Records ordered by ``(system stamp, id)``; ``after`` is an exclusive keyset position.

        The base half is arithmetic (stamps are monotonic in the index); the overlay half is a
        range of the sorted stamp index; the two are merged lazily.
        """
        if descending:
            keys = sorted(self._keys_by_stamp(None, min_stamp), reverse=True)
            if after is not None:
                keys = [k for k in keys if k < after]
            yield from self._records_for_keys(iter(keys), include_deleted, only_deleted)
            return
        yield from self._records_for_keys(
            self._keys_by_stamp(after, min_stamp), include_deleted, only_deleted
        )

    def _keys_by_stamp(
        self, after: tuple[int, int] | None, min_stamp: int | None
    ) -> Iterator[tuple[int, int]]:
        lo = after if after is not None else (min_stamp if min_stamp is not None else -(2**62), -1)
        if after is not None and min_stamp is not None and (min_stamp, -1) > after:
            lo = (min_stamp, -1)
        start = self.gen.first_index_at_or_after(lo[0])
        overlay = self.overlay
        gen = self.gen

        def base() -> Iterator[tuple[int, int]]:
            for i in range(start, self.base_count):
                key = (gen.base_stamp(i), i)
                if key > lo and i not in overlay:
                    yield key

        changed = self._by_stamp.irange(minimum=lo, inclusive=(False, True))
        return heapq.merge(base(), changed)

    def _records_for_keys(
        self, keys: Iterator[tuple[int, int]], include_deleted: bool, only_deleted: bool
    ) -> Iterator[tuple[int, dict]]:
        for _stamp, i in keys:
            rec = self.get(i)
            deleted = rec.get(DELETED, False)
            if only_deleted and not deleted:
                continue
            if deleted and not (include_deleted or only_deleted):
                continue
            yield i, rec

    def count(
        self, min_stamp: int | None = None, include_deleted: bool = False, only_deleted: bool = False
    ) -> int:
        """Count of records with stamp >= min_stamp, without generating the base records."""
        with self.lock:
            start = self.gen.first_index_at_or_after(min_stamp) if min_stamp is not None else 0
            base_untouched = self.base_count - start
            base_untouched -= sum(1 for i in self.overlay if start <= i < self.base_count)
            n = 0 if only_deleted else max(0, base_untouched)
            for _i, rec in self.overlay.items():
                if min_stamp is not None and rec[self.spec.system_stamp] < min_stamp:
                    continue
                deleted = rec.get(DELETED, False)
                if only_deleted and not deleted:
                    continue
                if deleted and not (include_deleted or only_deleted):
                    continue
                n += 1
            return n

    def changes_since(self, version: int) -> Iterator[tuple[int, dict]]:
        """Records changed after ``version`` (each once, in change order), deleted ones included."""
        pos = bisect.bisect_right(self._changes, (version, 2**62))
        for v, i in self._changes[pos:]:
            rec = self.overlay[i]
            if rec[VERSION] == v:
                yield i, rec

    # ------------------------------------------------------------------ writes
    def _commit(self, index: int, rec: dict, mode: ChangeMode, stamp: int | None, event: str) -> dict:
        old = self.overlay.get(index)
        if old is not None:
            self._by_stamp.discard((old[self.spec.system_stamp], index))
        if mode != "frozen" or stamp is not None:
            now = stamp if stamp is not None else self.clock.stamp_ms()
            rec[self.spec.system_stamp] = now
            if self.spec.user_stamp and mode == "user":
                rec[self.spec.user_stamp] = now
        self.version += 1
        rec[VERSION] = self.version
        if self.spec.crm == "dynamics":
            rec["versionnumber"] = 10_000_000 + self.version
        self.overlay[index] = rec
        self._by_stamp.add((rec[self.spec.system_stamp], index))
        self._changes.append((self.version, index))
        for listener in self.listeners:
            listener(event, rec)
        return rec

    # ------------------------------------------------------------------ automations
    def add_automation(self, field: str, value: Any, times: int = 1) -> Automation:
        spec = self.spec.field(field)
        if spec is None:
            raise ValueError(f"field: unknown field {field!r} on {self.spec.crm}/{self.spec.name}")
        if not spec.updateable:
            raise ValueError(f"field: {field!r} on {self.spec.crm}/{self.spec.name} is read-only")
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= MAX_AUTOMATION_TIMES:
            raise ValueError(f"times must be an integer from 1 to {MAX_AUTOMATION_TIMES}, got {times!r}")
        with self.lock:
            self._automation_ids += 1
            automation = Automation(self._automation_ids, field, value, times)
            self.automations.append(automation)
            return automation

    def clear_automations(self) -> int:
        with self.lock:
            cleared = len(self.automations)
            self.automations.clear()
            return cleared

    def _automate(self, result: ChangeResult) -> ChangeResult:
        """Fire every automation on a record a client just wrote; each firing is a change of its own."""
        rec = result.record
        for automation in self.automations:
            for _ in range(automation.times):
                rec = self._commit(
                    result.index, {**rec, automation.field: automation.value}, "automation", None, "update"
                )
        return ChangeResult(result.index, rec, result.created)

    # ------------------------------------------------------------------ writes (continued)
    def create(
        self, fields: dict, mode: ChangeMode = "user", stamp: int | None = None, client: bool = False
    ) -> ChangeResult:
        """Create a record; ``client``: a write through a CRM API, which fires the automations."""
        with self.lock:
            index = self.total
            self.created_count += 1
            now = stamp if stamp is not None else self.clock.stamp_ms()
            rec = {f.name: None for f in self.spec.fields}
            rec.update(fields)
            rec[self.spec.id_field] = self.spec.format_id(index)
            rec[self.spec.created_field] = now
            rec[self.spec.system_stamp] = now
            if self.spec.user_stamp:
                rec[self.spec.user_stamp] = now
            if self.spec.crm == "salesforce":
                rec["IsDeleted"] = False
            result = ChangeResult(
                index, self._commit(index, rec, "user" if mode == "frozen" else mode, now, "create"), True
            )
            return self._automate(result) if client and self.automations else result

    def update(
        self,
        index: int,
        fields: dict,
        mode: ChangeMode = "user",
        stamp: int | None = None,
        client: bool = False,
    ) -> ChangeResult:
        """Update a record; ``client``: a write through a CRM API, which fires the automations."""
        with self.lock:
            current = self.get(index)
            if current is None or current.get(DELETED):
                raise RecordNotFound(self.spec.format_id(index))
            rec = dict(current)
            rec.update(fields)
            result = ChangeResult(index, self._commit(index, rec, mode, stamp, "update"), False)
            return self._automate(result) if client and self.automations else result

    def delete(self, index: int, mode: ChangeMode = "user", stamp: int | None = None) -> ChangeResult:
        with self.lock:
            current = self.get(index)
            if current is None or current.get(DELETED):
                raise RecordNotFound(self.spec.format_id(index))
            rec = dict(current)
            rec[DELETED] = True
            rec[DELETED_AT] = stamp if stamp is not None else self.clock.stamp_ms()
            if self.spec.crm == "salesforce":
                rec["IsDeleted"] = True
            # deleting is a modification: the system stamp moves (or not, in frozen mode)
            return ChangeResult(index, self._commit(index, rec, mode, stamp, "delete"), False)

    def undelete(self, index: int) -> ChangeResult:
        with self.lock:
            current = self.get(index)
            if current is None or not current.get(DELETED):
                raise RecordNotFound(self.spec.format_id(index))
            rec = {k: v for k, v in current.items() if k not in (DELETED, DELETED_AT)}
            if self.spec.crm == "salesforce":
                rec["IsDeleted"] = False
            return ChangeResult(index, self._commit(index, rec, "user", None, "undelete"), False)
