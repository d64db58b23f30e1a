"""What a CRM writer is given and what it answers: one record each, matched by ``ref``.

The planner turns an outbound change into one :class:`Write` per CRM in that CRM's own terms
(object, field names, values); a writer sends them at the CRM's batch limit and answers one
:class:`WriteResult` per write, in any order, never raising for a single record's refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Write:
    ref: str  # our key for this write (the delivery id), echoed back in its result
    crm_object: str  # the CRM's object: Salesforce "Contact", HubSpot "contacts", Dynamics "contacts"
    # CRM field name -> value to set; values (and unique keys, often emails) stay out of reprs: PII
    values: dict[str, Any] = field(repr=False)
    record_id: str | None = None  # the CRM's native id: update that record (it must exist)
    # (unique field, value): create it, or update the one holding it
    upsert_key: tuple[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WriteResult:
    ref: str
    ok: bool
    record_id: str | None = None  # the CRM's id of the written record
    created: bool = False
    http_status: int | None = None
    error: str | None = None  # the CRM's reason, when not ok
    details: dict[str, Any] = field(default_factory=dict)


class CrmWriter(Protocol):
    crm: str
    batch_size: int  # the CRM's per-call limit for this kind of write

    def write(self, writes: Sequence[Write]) -> list[WriteResult]:
        """Send ``writes`` (any number: batched inside); one result per write.

        A record the CRM refuses is a result with ``ok=False`` and the CRM's reason; a failure of a
        whole call that survives the retries (auth, budget, outage) raises ``CrmRequestError``:
        nothing of that call is known to be written, and the caller leaves those writes pending.
        """
        ...
