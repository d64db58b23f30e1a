"""One write-back pass: plan the pending changes, send them per CRM, keep each CRM's answers.

Order of work per CRM: send (the writer batches at the CRM's limit), then keep every answer in
one transaction. A crash in between leaves those changes pending and the next pass sends them
again, which writes nothing twice (see ``store``). A CRM that cannot be reached after the retries
keeps its changes pending and the pass reports it as failed; the other CRMs are still served.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sync_platform.canonical.mapping.loader import Mapping
from sync_platform.core.config import OutboundConfig
from sync_platform.core.errors import CrmRequestError, RejectedRecord
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.audit import AuditEntry, AuditLog
from sync_platform.ops.dead_letters import OUTBOUND, DeadLetterQueue
from sync_platform.ops.echoes import EchoLedger
from sync_platform.outbound.conflicts import ConflictBook, screen
from sync_platform.outbound.plan import Planned, plan_changes
from sync_platform.outbound.store import REFUSED, WRITTEN, Delivery, OutboundStore
from sync_platform.outbound.writes import CrmWriter, WriteResult

NO_CRM = "none"  # the "crm" of a refusal that reached no CRM (a target holding no record)


@dataclass
class CrmOutcome:
    written: int = 0
    created: int = 0
    refused: int = 0
    failed: str | None = None  # why this CRM's changes stay pending


@dataclass
class OutboundReport:
    changes: int = 0
    repeats_ignored: int = 0
    crms: dict[str, CrmOutcome] = field(default_factory=dict)
    pending: int = 0  # (change, CRM) pairs still to send after this pass
    conflicts: int = 0  # found this pass (settled by a strategy or held)
    awaiting_review: int = 0  # (change, CRM) pairs held until a person decides

    @property
    def failed(self) -> dict[str, str]:
        return {crm: o.failed for crm, o in self.crms.items() if o.failed}

    def as_metadata(self) -> dict:
        return {
            "changes": self.changes,
            "repeats_ignored": self.repeats_ignored,
            "pending": self.pending,
            "conflicts": self.conflicts,
            "awaiting_review": self.awaiting_review,
            **{f"{crm}_written": o.written for crm, o in self.crms.items()},
            **{f"{crm}_created": o.created for crm, o in self.crms.items()},
            **{f"{crm}_refused": o.refused for crm, o in self.crms.items()},
            "failed": self.failed,
        }


def deliver(
    warehouse: Warehouse,
    mappings: dict[str, Mapping],
    config: OutboundConfig,
    writer_for: Callable[[str], CrmWriter],
    run_id: str,
) -> OutboundReport:
    store = OutboundStore(warehouse)
    store.ensure()
    changes, repeats = store.changes()
    done = set(store.delivered())
    plan = plan_changes(warehouse, changes, mappings, config, done)
    screened = screen(warehouse, plan.planned, {c.change_id: c for c in changes}, mappings, config.conflicts)
    ConflictBook(warehouse).add(screened.detected)
    store.record(screened.settled, run_id)
    report = OutboundReport(
        changes=len(changes),
        repeats_ignored=sum(repeats.values()),
        conflicts=len(screened.detected),
        awaiting_review=len(screened.held),
    )
    dead_letters = DeadLetterQueue(warehouse)

    no_target = [
        Delivery(
            change_id,
            NO_CRM,
            REFUSED,
            error="its target holds no live record in any CRM, or no CRM owns creates",
        )
        for change_id in plan.unknown_targets
        if (change_id, NO_CRM) not in done
    ]
    store.record(no_target, run_id)
    by_crm: dict[str, list[Planned]] = {}
    for planned in screened.send:
        by_crm.setdefault(planned.crm, []).append(planned)
    for crm, items in sorted(by_crm.items()):
        started = datetime.now(UTC)
        outcome = report.crms.setdefault(crm, CrmOutcome())
        answers = [
            Delivery(p.change_id, crm, REFUSED, p.crm_object, error=p.refused) for p in items if p.refused
        ]
        sendable = [p for p in items if p.write is not None]
        if sendable:
            try:
                results = writer_for(crm).write([p.write for p in sendable if p.write is not None])
            except CrmRequestError as exc:
                outcome.failed = str(exc)
                report.pending += len(sendable)
                results = []
            answers += _answers(crm, sendable, results)
        written = {a.change_id: a for a in answers if a.status == WRITTEN and a.record_id}
        EchoLedger(warehouse).record(  # before the answers: a crash in between only repeats an echo
            crm,
            [
                (p.crm_object, written[p.change_id].record_id, p.write.values, p.change_id)
                for p in sendable
                if p.write is not None and p.change_id in written
            ],
        )
        store.record(answers, run_id)
        _dead_letters(dead_letters, crm, [a for a in answers if a.status == REFUSED], items, run_id)
        outcome.written += sum(a.status == WRITTEN for a in answers)
        outcome.created += sum(bool(a.created) for a in answers)
        outcome.refused += sum(a.status == REFUSED for a in answers)
        AuditLog(warehouse).record(
            AuditEntry(
                run_id,
                "outbound",
                crm,
                ",".join(sorted({p.crm_object for p in items})),
                started,
                datetime.now(UTC),
                records_read=len(items),
                inserted=outcome.created,
                updated=outcome.written - outcome.created,
                rejected=outcome.refused,
                status="failed" if outcome.failed else ("partial" if outcome.refused else "success"),
                error_class="CrmRequestError" if outcome.failed else None,
                details={"refused": sorted({a.change_id for a in answers if a.status == REFUSED})[:20]},
            )
        )
    return report


def _answers(crm: str, sent: list[Planned], results: list[WriteResult]) -> list[Delivery]:
    by_ref = {r.ref: r for r in results}
    answers = []
    for planned in sent:
        result = by_ref.get(planned.change_id)
        if result is None:
            continue  # no answer (the call failed): still pending
        answers.append(
            Delivery(
                planned.change_id,
                crm,
                WRITTEN if result.ok else REFUSED,
                planned.crm_object,
                result.record_id,
                result.created if result.ok else None,
                result.http_status,
                None if result.ok else (result.error or "refused by the CRM"),
                planned.crm_fields,
            )
        )
    return answers


def _dead_letters(
    queue: DeadLetterQueue, crm: str, refused: list[Delivery], items: list[Planned], run_id: str
) -> None:
    """Each refusal in the dead-letter queue with its reason and the values it carried (redacted)."""
    values = {p.change_id: (p.write.values if p.write else {}) for p in items}
    by_object: dict[str, list[RejectedRecord]] = {}
    for answer in refused:
        by_object.setdefault(answer.crm_object or "?", []).append(
            RejectedRecord(
                answer.change_id, OUTBOUND, answer.error or "refused", values.get(answer.change_id, {})
            )
        )
    for crm_object, rejects in by_object.items():
        queue.add_records(crm, crm_object, rejects, run_id)
