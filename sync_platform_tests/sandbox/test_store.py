import pytest

from sync_platform.sandbox import SandboxConfig, SandboxState
from sync_platform.sandbox.store import DELETED, RecordNotFound


@pytest.fixture
def state() -> SandboxState:
    state = SandboxState(SandboxConfig(contacts=1_000))
    state.clock.freeze(1_780_000_000.0)
    return state


def _ids(pairs) -> list[str]:
    return [rec["Id"] for _, rec in pairs]


def test_modes_stamp_like_the_real_crm(state):
    store = state.store("salesforce", "Contact")
    before = store.get(5)
    state.clock.advance(60)
    user = store.update(5, {"Title": "CTO"}, mode="user").record
    assert user["SystemModstamp"] == user["LastModifiedDate"] > before["SystemModstamp"]
    state.clock.advance(60)
    auto = store.update(5, {"Title": "CEO"}, mode="automation").record
    assert auto["SystemModstamp"] > auto["LastModifiedDate"] == user["LastModifiedDate"]
    state.clock.advance(60)
    frozen = store.update(5, {"Title": "Intern"}, mode="frozen").record
    assert frozen["Title"] == "Intern"
    assert (frozen["SystemModstamp"], frozen["LastModifiedDate"]) == (
        auto["SystemModstamp"],
        auto["LastModifiedDate"],
    )
    assert frozen["__version"] > auto["__version"], (
        "the row version still moves (Dataverse change tracking sees it)"
    )


def test_stamp_order_merges_base_and_changes_with_id_tie_break(state):
    store = state.store("salesforce", "Contact")
    for i in (900, 3, 500):  # same frozen instant -> identical stamps
        store.update(i, {"Title": "x"}, mode="user")
    now = state.clock.now_ms()
    tail = list(store.iter_by_stamp(min_stamp=now))
    assert _ids(tail) == [store.spec.format_id(i) for i in (3, 500, 900)]
    # keyset paging inside the tie loses nothing
    first = list(store.iter_by_stamp(min_stamp=now))[:1]
    rest = list(store.iter_by_stamp(after=(now, first[0][0])))
    assert _ids(first + rest) == _ids(tail)
    # the changed records no longer appear at their old position
    all_ids = _ids(store.iter_by_stamp())
    assert len(all_ids) == len(set(all_ids)) == 1_000


def test_deletes_are_hidden_unless_asked_for_and_counted(state):
    store = state.store("hubspot", "contacts")
    store.delete(10)
    assert store.get(10)[DELETED]
    assert 10 not in [i for i, _ in store.iter_by_index()]
    assert [i for i, _ in store.iter_by_index(only_deleted=True)] == [10]
    assert store.count() == 999 and store.count(include_deleted=True) == 1_000
    assert store.count(only_deleted=True) == 1
    with pytest.raises(RecordNotFound):
        store.update(10, {"jobtitle": "x"})


def test_count_by_stamp_matches_a_scan(state):
    store = state.store("dynamics", "contacts")
    store.update(2, {"jobtitle": "x"})
    store.delete(7)
    store.create({"lastname": "New"})
    cut = store.gen.base_stamp(600)
    scanned = sum(1 for _ in store.iter_by_stamp(min_stamp=cut))
    assert store.count(min_stamp=cut) == scanned == 400 + 2  # 600..999 plus the update and the create


def test_change_log_reports_each_record_once_in_change_order(state):
    store = state.store("dynamics", "contacts")
    start = store.version
    store.update(1, {"jobtitle": "a"})
    store.update(2, {"jobtitle": "b"})
    store.update(1, {"jobtitle": "c"})
    store.delete(3)
    changed = [(i, rec.get(DELETED, False)) for i, rec in store.changes_since(start)]
    assert changed == [(2, False), (1, False), (3, True)]
    assert list(store.changes_since(store.version)) == []


def test_created_records_get_new_ids_after_the_base(state):
    store = state.store("salesforce", "Account")
    created = store.create({"Name": "Late Corp"})
    assert created.index == 100 and store.get_by_id(created.record["Id"])[1]["Name"] == "Late Corp"


def test_a_million_contacts_cost_nothing_until_read():
    state = SandboxState(SandboxConfig(contacts=1_000_000))
    store = state.store("salesforce", "Contact")
    assert store.count() == 1_000_000 and store.overlay == {}
    cut = store.gen.base_stamp(999_000)
    assert store.count(min_stamp=cut) == 1_000
