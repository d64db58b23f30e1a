"""Write-back's logic without HTTP: the mappings read backwards, fan-out, and exactly-once
bookkeeping around a writer that behaves like an idempotent CRM (the real writers against the
sandbox are in test_writers.py and test_outbound_job.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from sync_platform.canonical.mapping.loader import load_mappings
from sync_platform.core.config import OutboundConfig
from sync_platform.core.errors import CrmRequestError, ErrorKind
from sync_platform.core.warehouse import DUCKDB, Warehouse
from sync_platform.ops.dead_letters import DeadLetterQueue
from sync_platform.outbound.deliver import NO_CRM, deliver
from sync_platform.outbound.plan import ReverseMapping, derived_key
from sync_platform.outbound.store import OutboundStore
from sync_platform.outbound.writes import Write, WriteResult

MAPPINGS = load_mappings()
OWNERS = OutboundConfig(create_in={"contact": "salesforce"})


def test_the_mapping_files_read_backwards() -> None:
    sf = ReverseMapping(MAPPINGS["salesforce"])
    values, refused = sf.values(
        "contact", {"title": "VP Sales", "lifecycle_stage": "churned", "email_opt_out": True}
    )
    assert values == {"Title": "VP Sales", "Customer_Status__c": "Churned", "HasOptedOutOfEmail": True}
    assert refused == {}, "churned goes to the first Salesforce value listed for it"
    hs = ReverseMapping(MAPPINGS["hubspot"])
    values, _ = hs.values("contact", {"lifecycle_stage": "lead", "email_opt_out": False})
    assert values == {"lifecyclestage": "subscriber", "hs_email_optout": "false"}, "HubSpot takes strings"
    _, refused = sf.values(
        "contact", {"updated_at": "x", "account_source_id": "001", "shoe_size": 44, "lifecycle_stage": "vip"}
    )
    assert refused == {
        "updated_at": "set by the CRM itself",
        "account_source_id": "links between records are not written back",
        "shoe_size": "not a field of the canonical contact",
        "lifecycle_stage": "no salesforce value maps to 'vip'",
    }


class IdempotentCrm:
    """A writer over a dict, keyed like a CRM: updates need the record, upserts match their key."""

    def __init__(self, crm: str, refuse: set[str] = frozenset()) -> None:
        self.crm, self.batch_size = crm, 200
        self.records: dict[str, dict] = {"003A": {"Title": "old"}, "1": {}, "dyn-1": {}}
        self.calls: list[list[str]] = []
        self.refuse = refuse
        self.down = False

    def write(self, writes: list[Write]) -> list[WriteResult]:
        if self.down:
            raise CrmRequestError(self.crm, ErrorKind.SERVER_ERROR, "503 after 5 attempts")
        self.calls.append([w.ref for w in writes])
        results = []
        for w in writes:
            if w.ref in self.refuse:
                results.append(
                    WriteResult(w.ref, False, http_status=400, error="FIELD_INTEGRITY_EXCEPTION: bad")
                )
                continue
            if w.record_id is not None:
                self.records[w.record_id].update(w.values)
                results.append(WriteResult(w.ref, True, w.record_id))
                continue
            field, value = w.upsert_key
            found = next((k for k, r in self.records.items() if r.get(field) == value), None)
            if found is None:
                found = f"new-{len(self.records)}"
                self.records[found] = {}
            self.records[found].update(w.values)
            results.append(
                WriteResult(w.ref, True, found, created=found.startswith("new-") and len(self.calls) == 1)
            )
        return results


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    """The embedded default and the real PostgreSQL server: the bookkeeping's SQL runs on both."""
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    if request.param == "postgres":
        store = Warehouse("postgres", dsn=request.getfixturevalue("postgres_db"))
    else:
        store = Warehouse(DUCKDB, path=tmp_path / "data" / "w.duckdb")
    golden = pl.DataFrame(
        {
            "customer_id": ["cus_1", "cus_1", "cus_1", "cus_2"],
            "source_system": ["salesforce", "hubspot", "dynamics", "salesforce"],
            "source_id": ["003A", "1", "dyn-1", "003B"],
            "deleted_at": pl.Series([None, None, None, datetime(2026, 1, 1, tzinfo=UTC)]),
        }
    )
    store.write_frame(golden, "canonical", "contacts")
    return store


def run(warehouse: Warehouse, crms: dict[str, IdempotentCrm], n: int = 0):
    return deliver(warehouse, MAPPINGS, OWNERS, lambda crm: crms[crm], f"run-{n}")


def test_a_change_fans_out_to_every_crm_of_the_golden_record_once_however_often_it_is_delivered(
    warehouse: Warehouse,
) -> None:
    crms = {c: IdempotentCrm(c) for c in ("salesforce", "hubspot", "dynamics")}
    store = OutboundStore(warehouse)
    for _ in range(3):  # a trigger that fires three times
        store.put("contact", {"title": "VP Sales"}, target="cus_1", change_id="ticket-42")
    report = run(warehouse, crms)
    assert report.repeats_ignored == 2 and report.pending == 0
    assert crms["salesforce"].records["003A"]["Title"] == "VP Sales"
    assert crms["hubspot"].records["1"]["jobtitle"] == "VP Sales"
    assert crms["dynamics"].records["dyn-1"]["jobtitle"] == "VP Sales"
    again = run(warehouse, crms, 1)
    assert sum(len(c.calls) for c in crms.values()) == 3, "one call per CRM, none on the second pass"
    assert again.crms == {}
    assert store.status() == [("contact", c, "written", 1) for c in ("dynamics", "hubspot", "salesforce")]


def test_a_crash_after_the_crm_answered_sends_again_and_still_creates_one_record(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    crms = {"salesforce": IdempotentCrm("salesforce")}
    store = OutboundStore(warehouse)
    store.put("contact", {"last_name": "Ng", "title": "CTO"}, change_id="new-1")
    real_record = OutboundStore.record

    def crash(self, deliveries, run_id):
        if any(d.crm == "salesforce" for d in deliveries):
            raise KeyboardInterrupt("killed between the CRM's answer and the bookkeeping")
        return real_record(self, deliveries, run_id)

    monkeypatch.setattr(OutboundStore, "record", crash)
    with pytest.raises(KeyboardInterrupt):
        run(warehouse, crms)
    monkeypatch.setattr(OutboundStore, "record", real_record)
    assert store.delivered() == {}, "nothing kept: the change is still pending"
    run(warehouse, crms, 1)
    created = [r for k, r in crms["salesforce"].records.items() if k.startswith("new-")]
    assert created == [{"LastName": "Ng", "Title": "CTO", "External_Id__c": derived_key("new-1")}]
    (answer,) = store.delivered().values()
    assert answer.status == "written" and answer.record_id.startswith("new-")


def test_a_refused_record_is_a_dead_letter_the_rest_lands_and_an_unreachable_crm_keeps_its_changes(
    warehouse: Warehouse,
) -> None:
    crms = {c: IdempotentCrm(c) for c in ("salesforce", "hubspot", "dynamics")}
    crms["hubspot"].refuse = {"bad"}
    crms["dynamics"].down = True
    store = OutboundStore(warehouse)
    store.put("contact", {"title": "A"}, target="cus_1", change_id="bad")
    store.put("contact", {"title": "B"}, target="salesforce:003A", change_id="good")
    store.put("contact", {"title": "C"}, target="cus_2", change_id="deleted-only")
    store.put("contact", {"updated_at": "2026-01-01"}, target="salesforce:003A", change_id="read-only")
    report = run(warehouse, crms)
    assert report.failed.keys() == {"dynamics"} and report.pending == 1
    delivered = store.delivered()
    assert delivered[("bad", "salesforce")].status == "written"
    assert delivered[("bad", "hubspot")].status == "refused"
    assert "FIELD_INTEGRITY_EXCEPTION" in delivered[("bad", "hubspot")].error
    assert delivered[("deleted-only", NO_CRM)].status == "refused"
    assert "updated_at: set by the CRM itself" in delivered[("read-only", "salesforce")].error
    letters = {(d.crm, d.record_id): d for d in DeadLetterQueue(warehouse).pending()}
    assert letters.keys() == {("hubspot", "bad"), ("salesforce", "read-only")}
    assert letters[("hubspot", "bad")].is_outbound and "not written" in letters[("hubspot", "bad")].error

    crms["dynamics"].down = False  # the target is back: the next pass delivers what waited
    report = run(warehouse, crms, 1)
    assert report.pending == 0 and crms["dynamics"].records["dyn-1"]["jobtitle"] == "A"
    assert [call for c in crms.values() for call in c.calls if call].count(["bad"]) == 2, (
        "hubspot refused once and is not asked again; dynamics got it once it was back"
    )


def test_the_conflict_book_makes_its_own_schema(tmp_path: Path) -> None:
    """Screening before any change was stored (a benchmark, a fresh install) found no schema."""
    from sync_platform.outbound.conflicts import ConflictBook

    fresh = Warehouse(DUCKDB, path=tmp_path / "fresh.duckdb")
    ConflictBook(fresh).ensure()
    assert ConflictBook(fresh).all() == []
