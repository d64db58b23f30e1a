import pytest

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


def _digits(phone: str | None) -> str | None:
    return None if phone is None else "".join(c for c in phone if c.isdigit()).removeprefix("1")


SF_AS_STAGE = {
    "Prospect": "prospect",
    "Active": "customer",
    "Churned": "churned",
    "Former": "churned",
    None: "other",
}
HS_AS_STAGE = {
    "subscriber": "lead",
    "lead": "lead",
    "marketingqualifiedlead": "lead",
    "salesqualifiedlead": "prospect",
    "opportunity": "prospect",
    "customer": "customer",
    "evangelist": "customer",
    "other": "other",
}


def _shared_pairs(conflict_share: float, n: int = 2_000) -> list[tuple[dict, dict]]:
    """(Salesforce, HubSpot) contacts of the same person: Salesforce ``p`` is HubSpot ``p - n/4``."""
    state = SandboxState(SandboxConfig(contacts=n, conflict_share=conflict_share))
    sf, hs = state.store("salesforce", "Contact"), state.store("hubspot", "contacts")
    return [(sf.get(p), hs.get(p - n // 4)) for p in range(n // 4, n)]


def _differences(a: dict, b: dict) -> list[str]:
    """Facts two records of one person disagree on, after the canonical model's normalisation."""
    compared = {
        "first": (a["FirstName"], b["firstname"]),
        "last": (a["LastName"], b["lastname"]),
        "title": (a["Title"], b["jobtitle"]),
        "phone": (_digits(a["Phone"]), _digits(b["phone"])),
        "stage": (SF_AS_STAGE[a["Customer_Status__c"]], HS_AS_STAGE[b["lifecyclestage"]]),
        "opt_out": (a["HasOptedOutOfEmail"], b["hs_email_optout"]),
    }
    return [name for name, (x, y) in compared.items() if x is not None and y is not None and x != y]


def test_the_same_person_carries_the_same_facts_in_each_crm_in_its_own_formats():
    pairs = _shared_pairs(conflict_share=0.0)
    assert len(pairs) == 1_500
    assert [(a["Id"], _differences(a, b)) for a, b in pairs if _differences(a, b)] == []
    # the formatting still differs: the canonical model has normalising to do
    assert all(a["Phone"] != b["phone"] for a, b in pairs if a["Phone"] and b["phone"])
    assert {b["lifecyclestage"] for _, b in pairs} >= {
        "salesqualifiedlead",
        "opportunity",
        "customer",
        "evangelist",
    }
    assert {a["Customer_Status__c"] for a, _ in pairs} >= {"Prospect", "Active"}


def test_a_seeded_share_of_shared_people_carry_one_real_conflict():
    pairs = _shared_pairs(conflict_share=0.25)
    conflicting = [_differences(a, b) for a, b in pairs if _differences(a, b)]
    # a quarter of people get a conflict; for most of those both hold, it lands in the Salesforce or
    # HubSpot record (for the rest in the Dynamics one); a blank on the other side hides a few
    assert 0.12 * len(pairs) < len(conflicting) < 0.25 * len(pairs)
    assert all(len(fields) == 1 for fields in conflicting)
    assert {f for fields in conflicting for f in fields} == {"title", "phone", "stage"}
    assert pairs == _shared_pairs(conflict_share=0.25), "conflicts are seeded: the same every time"


def test_conflict_share_is_validated_and_survives_a_reset():
    with pytest.raises(ValueError, match="conflict_share"):
        SandboxConfig(conflict_share=1.5)
    state = SandboxState(SandboxConfig(contacts=100, conflict_share=0.0))
    state.reset(conflict_share=0.5)
    assert state.config.conflict_share == 0.5
    with pytest.raises(ValueError, match="conflict_share"):
        state.reset(conflict_share=-0.1)
