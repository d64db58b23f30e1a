from sync_platform.sandbox import SandboxConfig, SandboxState
from sync_platform.sandbox.generator import BASE_END_MS, BASE_START_MS


def _records(seed: int, crm: str, obj: str, n: int) -> list[dict]:
    store = SandboxState(SandboxConfig(contacts=2_000, seed=seed)).store(crm, obj)
    return [store.get(i) for i in range(n)]


def test_same_seed_same_records_and_different_seed_differs():
    for crm, obj in [("salesforce", "Contact"), ("hubspot", "tickets"), ("dynamics", "accounts")]:
        assert _records(5, crm, obj, 200) == _records(5, crm, obj, 200)
        assert _records(5, crm, obj, 200) != _records(6, crm, obj, 200)


def test_base_stamps_are_monotonic_and_inside_the_base_span():
    store = SandboxState(SandboxConfig(contacts=1_000_000)).store("salesforce", "Contact")
    stamps = [store.get(i)["SystemModstamp"] for i in (0, 1, 2, 500_000, 999_999)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert BASE_START_MS < stamps[0] and stamps[-1] <= BASE_END_MS
    first = store.get(10)
    assert first["CreatedDate"] <= first["SystemModstamp"] == first["LastModifiedDate"]


def test_data_is_realistically_messy():
    contacts = _records(42, "salesforce", "Contact", 2_000)
    emails = [c["Email"] for c in contacts if c["Email"]]
    normalized = [e.strip().lower() for e in emails]
    assert len(set(normalized)) < len(normalized), "some contacts share an email"
    assert any(e != e.strip().lower() for e in emails), "some emails are mixed-case or padded"
    assert any(c["Phone"] is None for c in contacts) and any(c["Title"] is None for c in contacts)
    assert any("@" not in e for e in emails), "a few emails break the business rule"
    cases = _records(42, "salesforce", "Case", 1_000)
    assert any(c["IsClosed"] and c["ClosedDate"] is None for c in cases), "a closed case without a close date"


def test_the_same_people_appear_in_several_crms():
    state = SandboxState(SandboxConfig(contacts=2_000))
    sf = {
        (c["Email"] or "").strip().lower()
        for c in (state.store("salesforce", "Contact").get(i) for i in range(2_000))
    }
    hs = {
        (c["email"] or "").strip().lower()
        for c in (state.store("hubspot", "contacts").get(i) for i in range(2_000))
    }
    overlap = (sf & hs) - {""}
    assert 500 < len(overlap) < 2_000


def test_associations_point_at_existing_records():
    state = SandboxState(SandboxConfig(contacts=1_000))
    accounts = state.store("salesforce", "Account")
    contacts = state.store("salesforce", "Contact")
    for i in range(0, 1_000, 37):
        assert accounts.get_by_id(contacts.get(i)["AccountId"]) is not None
    case = state.store("salesforce", "Case").get(3)
    assert contacts.get_by_id(case["ContactId"]) is not None
