import pytest

from sync_platform.sandbox import SandboxConfig, SandboxState, soql
from sync_platform.sandbox.schema import OBJECTS

SALESFORCE = OBJECTS["salesforce"]
JUNE_1_2024_MS = 1_717_200_000_000


def compile_(text: str) -> soql.Query:
    return soql.compile_query(text, SALESFORCE)


@pytest.fixture
def state() -> SandboxState:
    """1,000 contacts with some churn: ties at one frozen instant, deletions and creations."""
    state = SandboxState(SandboxConfig(contacts=1_000, seed=3))
    state.clock.freeze(1_780_000_000.0)
    store = state.store("salesforce", "Contact")
    for i in (900, 5, 512, 77, 640):
        store.update(i, {"Title": "Tied"})
    for i in (6, 513, 901):
        store.delete(i)
    store.create({"LastName": "Newcomer", "Title": None})
    return state


# ------------------------------------------------------------------ parsing and binding
def test_keywords_and_names_are_case_insensitive_and_come_back_canonical():
    q = compile_(
        "select id, EMAIL, systemmodstamp from contact where lastname = 'Smith' "
        "order by SYSTEMMODSTAMP desc nulls last limit 5 offset 2"
    )
    assert q.spec.name == "Contact" and q.fields == ("Id", "Email", "SystemModstamp")
    assert q.order == (soql.OrderKey("SystemModstamp", True, False),)
    assert (q.limit, q.offset, q.is_count) == (5, 2, False)


def test_names_that_begin_with_keywords_stay_names():
    q = compile_("SELECT Industry, Name FROM Account WHERE Industry IN ('Retail') ORDER BY Name")
    assert q.fields == ("Industry", "Name") and q.order[0].field == "Name"


def test_and_binds_tighter_than_or_and_not_negates_its_operand():
    q = compile_("SELECT Id FROM Contact WHERE Title = 'CEO' OR Title = 'CTO' AND NOT LeadSource = 'Web'")
    assert isinstance(q.where, soql.AnyOf)
    right = q.where.items[1]
    assert isinstance(right, soql.AllOf) and isinstance(right.items[1], soql.Not)
    assert q.matches({"Title": "cto", "LeadSource": "Phone Inquiry"})
    assert not q.matches({"Title": "CTO", "LeadSource": "Web"})


@pytest.mark.parametrize(
    "literal",
    ["2024-06-01T00:00:00Z", "2024-06-01T00:00:00.000+0000", "2024-06-01T02:00:00+02:00", "2024-06-01"],
)
def test_datetime_literal_spellings_mean_one_instant(literal):
    q = compile_(f"SELECT Id FROM Contact WHERE SystemModstamp >= {literal}")
    assert q.where == soql.Compare("SystemModstamp", ">=", JUNE_1_2024_MS)


def test_strings_unescape_and_compare_caselessly():
    q = compile_(r"SELECT Id FROM Contact WHERE LastName = 'O\'Brien'")
    assert q.matches({"LastName": "O'BRIEN"}) and not q.matches({"LastName": "OBrien"})


def test_like_wildcards_and_escaped_wildcards():
    q = compile_(r"SELECT Id FROM Contact WHERE Email LIKE '%\_x@%'")
    assert q.matches({"Email": "A_X@example.com"})
    assert not q.matches({"Email": "abx@example.com"}) and not q.matches({"Email": None})


def test_nulls_behave_as_in_soql():
    assert compile_("SELECT Id FROM Contact WHERE Title != 'CEO'").matches({"Title": None})
    assert compile_("SELECT Id FROM Contact WHERE Title = null").matches({"Title": None})
    assert not compile_("SELECT Id FROM Contact WHERE Title < 'Z'").matches({"Title": None})
    assert compile_("SELECT Id FROM Contact WHERE Title NOT IN ('CEO')").matches({"Title": None})


def test_fifteen_character_ids_are_normalised():
    q = compile_("SELECT Id FROM Contact WHERE Id = '003Sb0000000042'")
    assert q.matches({"Id": "003Sb0000000042AAA"})


@pytest.mark.parametrize(
    "text, code, fragment",
    [
        ("SELECT Id FORM Contact", "MALFORMED_QUERY", "unexpected token: 'FORM'"),
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY", "'<EOF>'"),
        ("SELECT Id FROM Contact GROUP BY Email", "MALFORMED_QUERY", "'GROUP'"),
        ('SELECT Id FROM Contact WHERE Email = "x"', "MALFORMED_QUERY", "unexpected token"),
        ("SELECT * FROM Contact", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id, id FROM Contact", "MALFORMED_QUERY", "duplicate field selected: Id"),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp > '2024-01-01'",
            "MALFORMED_QUERY",
            "must be of type dateTime and should not be enclosed in quotes",
        ),
        ("SELECT Id FROM Contact WHERE Email = 5", "MALFORMED_QUERY", "must be of type string"),
        ("SELECT Id FROM Contact WHERE CreatedDate > 2024-13-45", "MALFORMED_QUERY", "unparseable literal"),
        (r"SELECT Id FROM Contact WHERE Title = 'a\qb'", "MALFORMED_QUERY", "Illegal character sequence"),
        ("SELECT Foo FROM Contact", "INVALID_FIELD", "No such column 'Foo' on entity 'Contact'"),
        ("SELECT Account.Name FROM Contact", "INVALID_FIELD", "Didn't understand relationship 'Account'"),
        ("SELECT Id FROM Lead", "INVALID_TYPE", "sObject type 'Lead' is not supported"),
        ("SELECT Id FROM Contact WHERE Id = 'abc'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: abc"),
        (
            "SELECT Id FROM Contact WHERE HasOptedOutOfEmail > true",
            "INVALID_QUERY_FILTER_OPERATOR",
            "boolean",
        ),
        ("SELECT Id FROM Contact WHERE CreatedDate LIKE '2024%'", "INVALID_QUERY_FILTER_OPERATOR", "LIKE"),
        ("SELECT Id FROM Contact OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "2000"),
    ],
)
def test_refusals_carry_salesforce_error_codes(text, code, fragment):
    with pytest.raises(soql.SoqlError) as refused:
        compile_(text)
    assert refused.value.code == code and fragment in refused.value.message


def test_errors_point_at_the_offending_column():
    with pytest.raises(soql.SoqlError) as refused:
        compile_("SELECT Id, Foo FROM Contact")
    assert "\nSELECT Id, Foo FROM Contact\n           ^\nERROR at Row:1:Column:12\n" in refused.value.message


# ------------------------------------------------------------------ planning
@pytest.mark.parametrize(
    "text, path, exact",
    [
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-06-01T00:00:00Z ORDER BY SystemModstamp, Id",
            "stamp",
            True,
        ),
        ("SELECT Id FROM Contact WHERE SystemModstamp >= 2024-06-01T00:00:00Z", "stamp", True),
        ("SELECT Id FROM Contact ORDER BY SystemModstamp DESC LIMIT 1", "stamp_desc", True),
        ("SELECT Id FROM Contact", "index", True),
        ("SELECT Id FROM Contact WHERE Id > '003Sb0000000010AAA' ORDER BY Id", "index", True),
        ("SELECT Id FROM Contact WHERE Id IN ('003Sb0000000001AAA', '003Sb0000000002AAA')", "ids", False),
        ("SELECT Id FROM Contact ORDER BY LastName", "sorted", True),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-06-01T00:00:00Z AND Title = 'CEO' "
            "ORDER BY SystemModstamp",
            "stamp",
            False,
        ),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-06-01T00:00:00Z OR Title = 'CEO'",
            "index",
            False,
        ),
    ],
)
def test_plan_picks_the_cheapest_access_path(text, path, exact):
    chosen = soql.plan(compile_(text), all_rows=False)
    assert (chosen.path, chosen.exact) == (path, exact)


def test_plan_turns_predicates_into_inclusive_bounds():
    query = compile_(
        "SELECT Id FROM Contact WHERE SystemModstamp > 2024-06-01T00:00:00Z "
        "AND SystemModstamp <= 2024-07-01T00:00:00Z AND Id < '003Sb0000000100AAA'"
    )
    chosen = soql.plan(query, all_rows=False)
    assert (chosen.min_stamp, chosen.max_stamp) == (JUNE_1_2024_MS + 1, JUNE_1_2024_MS + 30 * 86_400_000)
    assert (chosen.min_index, chosen.max_index, chosen.exact) == (None, 99, False)


def test_is_deleted_is_only_reachable_through_query_all():
    text = "SELECT Id FROM Contact WHERE IsDeleted = true"
    assert soql.plan(compile_(text), all_rows=False).empty
    assert soql.plan(compile_(text), all_rows=True).deleted == "only"
    assert soql.plan(compile_("SELECT Id FROM Contact"), all_rows=True).deleted == "include"


# ------------------------------------------------------------------ execution
def _everything(state: SandboxState, all_rows: bool) -> list[tuple[int, dict]]:
    return list(state.store("salesforce", "Contact").iter_by_index(include_deleted=all_rows))


def _page_through(state: SandboxState, text: str, all_rows: bool, size: int) -> list[str]:
    store, query = state.store("salesforce", "Contact"), compile_(text)
    chosen = soql.plan(query, all_rows)
    page, _total = soql.first_page(store, query, chosen, size)
    ids = [rec["Id"] for _i, rec in page.rows]
    while page.more:
        page = soql.fetch_page(store, query, chosen, page.position, size)
        ids += [rec["Id"] for _i, rec in page.rows]
    return ids


def _by_stamp(rows):
    return [r["Id"] for _i, r in sorted(rows, key=lambda p: (p[1]["SystemModstamp"], p[0]))]


def _by_stamp_desc(rows):
    return [r["Id"] for _i, r in sorted(rows, key=lambda p: (p[1]["SystemModstamp"], p[0]), reverse=True)]


def _by_id(rows):
    return [r["Id"] for _i, r in rows]


def _by_title_nulls_last(rows):
    def key(pair):
        title = pair[1]["Title"]
        return title is None, (title or "").casefold(), pair[0]

    return [r["Id"] for _i, r in sorted(rows, key=key)]


def _by_last_name_desc(rows):
    by_index = sorted(rows, key=lambda p: p[0])
    return [r["Id"] for _i, r in sorted(by_index, key=lambda p: p[1]["LastName"].casefold(), reverse=True)]


@pytest.mark.parametrize(
    "where, order, reference, all_rows",
    [
        ("SystemModstamp >= 2025-01-01T00:00:00Z", "SystemModstamp, Id", _by_stamp, False),
        ("SystemModstamp >= 2025-01-01T00:00:00Z AND Title != 'CEO'", "SystemModstamp", _by_stamp, True),
        ("SystemModstamp > 2024-03-01T00:00:00Z", "SystemModstamp DESC", _by_stamp_desc, False),
        ("SystemModstamp >= 2025-06-01T00:00:00Z", "Id", _by_id, True),
        ("Id > '003Sb0000000400AAA' AND Id <= '003Sb0000000901AAA'", "Id", _by_id, True),
        ("LeadSource IN ('Web', 'Partner Referral')", "Title NULLS LAST, Id", _by_title_nulls_last, False),
        ("Email LIKE '%example.com'", "LastName DESC", _by_last_name_desc, False),
        (
            "Id IN ('003Sb0000000005AAA', '003Sb0000000006AAA', '003Sb0000000900AAA', '003Sb0000001000AAA')",
            "SystemModstamp",
            _by_stamp,
            True,
        ),
        ("IsDeleted = true", "SystemModstamp DESC", _by_stamp_desc, True),
        ("IsDeleted = true AND Title != 'x'", "Id", _by_id, True),
    ],
)
def test_every_path_pages_to_what_brute_force_finds(state, where, order, reference, all_rows):
    text = f"SELECT Id FROM Contact WHERE {where} ORDER BY {order}"
    query = compile_(text)
    expected = reference([(i, r) for i, r in _everything(state, all_rows) if query.matches(r)])
    assert expected, "the case must select something"
    assert _page_through(state, text, all_rows, size=max(2, len(expected) // 7)) == expected
    store = state.store("salesforce", "Contact")
    assert soql.count_matches(store, query, soql.plan(query, all_rows)) == len(expected)


def test_keyset_paging_survives_writes_between_pages(state):
    store, query = state.store("salesforce", "Contact"), compile_("SELECT Id FROM Contact ORDER BY Id")
    chosen = soql.plan(query, all_rows=False)
    first, _total = soql.first_page(store, query, chosen, 100)
    store.delete(150)
    store.update(120, {"Title": "Moved on"})
    created = store.create({"LastName": "Late"}).record["Id"]
    ids = [rec["Id"] for _i, rec in first.rows]
    page = first
    while page.more:
        page = soql.fetch_page(store, query, chosen, page.position, 100)
        ids += [rec["Id"] for _i, rec in page.rows]
    assert len(ids) == len(set(ids)) == 1_000 - 3 + 1 - 1 + 1
    assert store.spec.format_id(150) not in ids and store.spec.format_id(120) in ids and ids[-1] == created


def test_offset_and_limit_window_the_rows_and_the_total(state):
    store = state.store("salesforce", "Contact")
    query = compile_("SELECT Id FROM Contact ORDER BY Id LIMIT 5 OFFSET 3")
    page, total = soql.first_page(store, query, soql.plan(query, False), 5)
    assert total == 5 and [i for i, _ in page.rows] == [3, 4, 5, 7, 8]  # index 6 is deleted


@pytest.mark.parametrize(
    "text, all_rows, page_size, most_generated",
    [
        (
            "SELECT Id, Email, SystemModstamp FROM Contact WHERE SystemModstamp >= 2024-06-01T00:00:00Z "
            "ORDER BY SystemModstamp, Id",
            False,
            2_000,
            2_001,
        ),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2025-12-01T00:00:00Z ORDER BY Id",
            False,
            2_000,
            2_001,
        ),
        ("SELECT Id FROM Contact WHERE Id > '003Sb0000700000AAA'", False, 2_000, 2_001),
        ("SELECT Id, SystemModstamp FROM Contact ORDER BY SystemModstamp DESC LIMIT 1", False, 1, 2),
        (
            "SELECT Id FROM Contact WHERE IsDeleted = true AND SystemModstamp >= 2024-06-01T00:00:00Z "
            "ORDER BY SystemModstamp",
            True,
            1,
            0,
        ),
        ("SELECT Id FROM Contact WHERE IsDeleted = true ORDER BY LastName", True, 1, 0),
        (
            "SELECT COUNT() FROM Contact WHERE SystemModstamp >= 2024-06-01T00:00:00Z AND IsDeleted = false",
            False,
            0,
            0,
        ),
    ],
)
def test_a_million_contacts_page_without_generating_what_they_skip(
    monkeypatch, text, all_rows, page_size, most_generated
):
    store = SandboxState(SandboxConfig(contacts=1_000_000)).store("salesforce", "Contact")
    store.update(10, {"Title": "Recently edited"})
    store.delete(20)
    generated: list[int] = []
    original = store.gen.record
    monkeypatch.setattr(store.gen, "record", lambda i: generated.append(i) or original(i))
    query = compile_(text)
    chosen = soql.plan(query, all_rows)
    if query.is_count:
        assert soql.count_matches(store, query, chosen) == store.count(min_stamp=JUNE_1_2024_MS)
    else:
        page, total = soql.first_page(store, query, chosen, page_size)
        assert len(page.rows) == page_size and total >= page_size
    assert len(generated) <= most_generated
