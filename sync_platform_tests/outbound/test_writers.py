"""The CRM writers against the sandbox over HTTP: batching, idempotent upserts, per-record refusals, 429s."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from sync_platform.core.config import CrmSyncConfig
from sync_platform.core.errors import CrmRequestError, ErrorKind
from sync_platform.ingest.sources.http import RequestStats
from sync_platform.outbound.writers import make_writer
from sync_platform.outbound.writes import Write, WriteResult
from sync_platform.sandbox import SandboxConfig, SandboxServer
from sync_platform.sandbox.client import SandboxAdminClient
from sync_platform.sandbox.schema import OBJECTS

# crm -> (object, title field, unique field, field a create needs, update endpoint, upsert endpoint)
CRMS = {
    "salesforce": ("Contact", "Title", "External_Id__c", "LastName", "composite_update", "composite_upsert"),
    "hubspot": ("contacts", "jobtitle", "email", "lastname", "batch_update", "batch_upsert"),
    "dynamics": ("contacts", "jobtitle", "externalid", "lastname", "upsert", "upsert"),
}
FAST = CrmSyncConfig(backoff_initial_seconds=0.01, backoff_max_seconds=0.05)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    server = SandboxServer(SandboxConfig(contacts=300, seed=5)).start()
    monkeypatch.setenv("SYNC_PLATFORM_SANDBOX_URL", server.base_url)
    monkeypatch.delenv("SYNC_PLATFORM_SANDBOX_CA", raising=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(sandbox: SandboxServer) -> Iterator[SandboxAdminClient]:
    with SandboxAdminClient(sandbox.base_url) as client:
        yield client


def record_id(crm: str, index: int) -> str:
    return OBJECTS[crm][CRMS[crm][0]].format_id(index)


def unique_value(crm: str, n: int) -> str:
    return f"writer-{n}@example.com" if crm == "hubspot" else f"ext-{n}"


@pytest.mark.parametrize(("crm", "count"), [("salesforce", 250), ("hubspot", 150), ("dynamics", 12)])
def test_updates_go_out_at_the_crms_batch_limit_and_all_land(
    admin: SandboxAdminClient, crm: str, count: int
) -> None:
    obj, title, *_, update_endpoint, _ = CRMS[crm]
    stats = RequestStats()
    writer = make_writer(crm, FAST, stats)
    writes = [Write(f"d{i}", obj, {title: f"Title {i}"}, record_id=record_id(crm, i)) for i in range(count)]
    admin.reset_stats()

    results = writer.write(writes)

    assert [r.ref for r in results] == [w.ref for w in writes]
    assert all(r.ok and not r.created for r in results), [r for r in results if not r.ok][:3]
    assert [r.record_id for r in results] == [w.record_id for w in writes]
    calls = math.ceil(count / writer.batch_size)
    assert admin.requests(crm, update_endpoint) == calls
    assert stats.requests - stats.auth_refreshes <= calls + 1  # + the token request, if the CRM has one
    for i in range(count):
        assert admin.get(crm, obj, record_id(crm, i))[title] == f"Title {i}"


@pytest.mark.parametrize("crm", list(CRMS))
def test_an_upsert_sent_twice_makes_one_record(admin: SandboxAdminClient, crm: str) -> None:
    obj, title, unique, needed, *_ = CRMS[crm]
    writer = make_writer(crm, FAST)
    key = (unique, unique_value(crm, 1))
    before = admin.info()["objects"][crm][obj]["records"]

    [first] = writer.write([Write("d1", obj, {needed: "Lovelace", title: "Analyst"}, upsert_key=key)])
    [second] = writer.write([Write("d1", obj, {needed: "Lovelace", title: "Engineer"}, upsert_key=key)])

    assert first.ok and first.created and first.record_id
    assert second.ok and not second.created and second.record_id == first.record_id
    assert admin.info()["objects"][crm][obj]["records"] == before + 1
    record = admin.get(crm, obj, first.record_id)
    assert (record[title], str(record[unique]).lower()) == ("Engineer", key[1])


def _bad_writes(crm: str) -> dict[str, Write]:
    """Writes the CRM refuses, by why: an id of no record, a read-only field, a bad value."""
    obj, title, *_ = CRMS[crm]
    missing = {
        "salesforce": "003Sb0000009999AAA",
        "hubspot": "999999",
        "dynamics": "00009999-0002-4000-8000-5a4e0b0c5d1e",
    }[crm]
    read_only = {"salesforce": "CreatedDate", "hubspot": "createdate", "dynamics": "createdon"}[crm]
    bad: dict[str, Write] = {
        "missing": Write("missing", obj, {title: "Ghost"}, record_id=missing),
    }
    if crm != "dynamics":  # Dataverse ignores read-only columns in a write (as the sandbox does)
        bad["read_only"] = Write(
            "read_only", obj, {read_only: "2020-01-01T00:00:00Z"}, record_id=record_id(crm, 41)
        )
    value = {
        "salesforce": ("Email", "not an email"),
        "hubspot": ("lifecyclestage", "not-a-stage"),
        "dynamics": ("donotemail", "maybe"),
    }[crm]
    bad["bad_value"] = Write("bad_value", obj, {value[0]: value[1]}, record_id=record_id(crm, 42))
    return bad


REASONS = {
    "salesforce": {
        "missing": "INVALID_CROSS_REFERENCE_KEY",
        "read_only": "INVALID_FIELD_FOR_INSERT_UPDATE",
        "bad_value": "INVALID_EMAIL_ADDRESS",
    },
    "hubspot": {"missing": "OBJECT_NOT_FOUND", "read_only": "READ_ONLY_VALUE", "bad_value": "INVALID_OPTION"},
    "dynamics": {"missing": "Does Not Exist", "bad_value": "Edm.Boolean"},
}


@pytest.mark.parametrize("crm", list(CRMS))
def test_refused_records_fail_alone_with_the_crms_reason(admin: SandboxAdminClient, crm: str) -> None:
    obj, title, unique, needed, *_ = CRMS[crm]
    writer = make_writer(crm, FAST)
    good = [Write(f"good{i}", obj, {title: f"Good {i}"}, record_id=record_id(crm, i)) for i in range(5)]
    good.append(Write("good-new", obj, {needed: "Hopper"}, upsert_key=(unique, unique_value(crm, 7))))
    bad = _bad_writes(crm)
    writes = [*good[:2], *bad.values(), *good[2:]]

    results = {r.ref: r for r in writer.write(writes)}

    assert set(results) == {w.ref for w in writes}
    for w in good:
        assert results[w.ref].ok, results[w.ref]
    for i in range(5):
        assert admin.get(crm, obj, record_id(crm, i))[title] == f"Good {i}"
    assert admin.get(crm, obj, str(results["good-new"].record_id))[needed] == "Hopper"
    for ref, reason in REASONS[crm].items():
        result: WriteResult = results[ref]
        assert not result.ok and reason in (result.error or ""), result
        assert result.http_status is not None and result.http_status >= 200
    assert admin.get(crm, obj, record_id(crm, 42))[title] != "Ghost"


@pytest.mark.parametrize("crm", list(CRMS))
def test_a_429_burst_is_retried_and_every_record_lands_once(admin: SandboxAdminClient, crm: str) -> None:
    obj, title, unique, needed, *_ = CRMS[crm]
    stats = RequestStats()
    writer = make_writer(crm, FAST, stats)
    writes = [Write(f"u{i}", obj, {title: f"Burst {i}"}, record_id=record_id(crm, 100 + i)) for i in range(3)]
    writes += [
        Write(f"n{i}", obj, {needed: "Burst"}, upsert_key=(unique, unique_value(crm, 50 + i)))
        for i in range(3)
    ]
    before = admin.info()["objects"][crm][obj]["records"]
    if crm == "salesforce":  # Salesforce's own limit is the daily budget (a 403): a gateway's 429s here
        admin.inject("error", crm=crm, path="/composite", status=429, count=3)
    else:
        admin.inject("rate_limit", crm=crm, path="/contacts", count=3, delay=0.05)

    results = writer.write(writes)

    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert stats.rate_limited == 3 and stats.retries == 3
    assert admin.info()["objects"][crm][obj]["records"] == before + 3
    for i in range(3):
        assert admin.get(crm, obj, record_id(crm, 100 + i))[title] == f"Burst {i}"
    assert [r.created for r in results] == [False] * 3 + [True] * 3


def test_hubspot_sends_a_batch_refused_whole_again_one_record_at_a_time(admin: SandboxAdminClient) -> None:
    writer = make_writer("hubspot", FAST)
    writes = [Write(f"g{i}", "contacts", {"jobtitle": f"Good {i}"}, record_id=str(i + 1)) for i in range(3)]
    writes.append(Write("bad", "contacts", {"lifecyclestage": "not-a-stage"}, record_id="9"))
    admin.reset_stats()

    results = writer.write(writes)

    assert [r.ok for r in results] == [True, True, True, False]
    assert admin.requests("hubspot", "batch_update", 400) == 1  # refused whole, then ...
    assert admin.requests("hubspot", "update") == 4  # ... each record on its own
    assert results[3].http_status == 400 and "INVALID_OPTION" in (results[3].error or "")


@pytest.mark.parametrize("crm", list(CRMS))
def test_a_call_that_fails_for_good_raises_and_names_no_value(admin: SandboxAdminClient, crm: str) -> None:
    obj, title, unique, needed, *_ = CRMS[crm]
    writer = make_writer(crm, CrmSyncConfig(max_attempts=2, backoff_initial_seconds=0.01))
    secret_key = unique_value(crm, 99).replace("@", ".obrien@") if crm == "hubspot" else "ext-o'brien"
    write = Write("d1", obj, {needed: "Sensitive Surname"}, upsert_key=(unique, secret_key))
    admin.inject("outage", crm=crm, path="/contacts" if crm != "salesforce" else "/composite", count=5)

    with pytest.raises(CrmRequestError) as failed:
        writer.write([write])

    assert failed.value.kind == ErrorKind.SERVER_ERROR and failed.value.attempts == 2
    assert "Sensitive" not in str(failed.value) and "brien" not in str(failed.value)
    assert "Sensitive" not in repr(write) and "brien" not in repr(write)


def test_a_quote_in_a_dynamics_key_is_escaped_and_an_unaddressable_key_is_refused_unsent(
    admin: SandboxAdminClient,
) -> None:
    writer = make_writer("dynamics", FAST)
    key = ("externalid", "o'brien 1")
    [first] = writer.write([Write("a", "contacts", {"lastname": "O'Brien"}, upsert_key=key)])
    [second] = writer.write([Write("b", "contacts", {"jobtitle": "Chief"}, upsert_key=key)])
    assert first.created and not second.created and second.record_id == first.record_id
    record = admin.get("dynamics", "contacts", str(first.record_id))
    assert (record["externalid"], record["jobtitle"]) == ("o'brien 1", "Chief")

    admin.reset_stats()
    [refused] = writer.write([Write("c", "contacts", {"lastname": "X"}, upsert_key=("externalid", "a/b"))])
    assert not refused.ok and "cannot address" in (refused.error or "")
    assert admin.requests("dynamics", "upsert") == 0
