"""The Salesforce dialect as simple-salesforce sees it: over TLS, with the real client unchanged."""

import datetime as dt
import gc
import re
from collections.abc import Iterator

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from sync_platform.sandbox.formats import parse_datetime_ms, salesforce_datetime

BATCH_200 = {"Sforce-Query-Options": "batchSize=200"}
SF_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def _token(server, **form: str) -> requests.Response:
    cfg = server.state.config
    data = {
        "grant_type": "client_credentials",
        "client_id": cfg.client_id,
        "client_secret": cfg.client_secret,
        **form,
    }
    return requests.post(
        f"{server.base_url}/services/oauth2/token", data=data, verify=server.ca_file, timeout=10
    )


def _client(server, token: str) -> Salesforce:
    session = requests.Session()
    session.verify = server.ca_file
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would silently override session.verify
    return Salesforce(instance_url=server.base_url, session_id=token, session=session)


@pytest.fixture
def sf(tls_sandbox) -> Iterator[Salesforce]:
    client = _client(tls_sandbox, _token(tls_sandbox).json()["access_token"])
    yield client
    client.session.close()
    # a pytest.raises traceback is a reference cycle that keeps the failed response, and with it a TLS
    # socket, alive; the server's graceful shutdown would wait two seconds for that connection
    gc.collect()


def _raw(server, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        f"{server.base_url}{path}", headers=headers, verify=server.ca_file, timeout=10, **kwargs
    )


def _soql_time(ms: int) -> str:
    return salesforce_datetime(ms)


def _ids(result: dict) -> list[str]:
    return [r["Id"] for r in result["records"]]


# ------------------------------------------------------------------ OAuth
def test_token_grants_and_their_refusals(tls_sandbox):
    ok = _token(tls_sandbox)
    body = ok.json()
    assert ok.status_code == 200 and "Sforce-Limit-Info" not in ok.headers
    assert body["instance_url"] == tls_sandbox.base_url and body["token_type"] == "Bearer"
    assert body["issued_at"].isdigit() and body["signature"] and body["id"].startswith(tls_sandbox.base_url)

    refreshed = _token(tls_sandbox, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != body["access_token"]
    fresh_token = refreshed.json()["access_token"]
    assert _raw(tls_sandbox, "/services/data/v59.0/limits/", fresh_token).status_code == 200

    refusals = [
        (_token(tls_sandbox, client_secret="wrong"), "invalid_client"),
        (_token(tls_sandbox, grant_type="refresh_token", refresh_token="nope"), "invalid_grant"),
        (_token(tls_sandbox, grant_type="password", username="u", password="p"), "unsupported_grant_type"),
    ]
    for response, error in refusals:
        assert response.status_code == 400 and response.json()["error"] == error
        assert response.json()["error_description"]


# ------------------------------------------------------------------ query
def test_query_returns_selected_fields_in_canonical_case(sf):
    result = sf.query("select id, email, systemmodstamp, hasoptedoutofemail from contact order by id limit 3")
    assert result["totalSize"] == 3 and result["done"] and "nextRecordsUrl" not in result
    first = result["records"][0]
    assert list(first) == ["attributes", "Id", "Email", "SystemModstamp", "HasOptedOutOfEmail"]
    url = f"/services/data/v59.0/sobjects/Contact/{first['Id']}"
    assert first["attributes"] == {"type": "Contact", "url": url}
    assert SF_DATETIME.match(first["SystemModstamp"]) and isinstance(first["HasOptedOutOfEmail"], bool)
    assert sf.api_usage["api-usage"].used >= 1


def test_query_all_sees_deleted_rows_and_query_does_not(sf):
    ids = _ids(sf.query("SELECT Id FROM Contact ORDER BY Id LIMIT 3"))
    assert sf.Contact.delete(ids[0]) == 204
    wanted = "SELECT Id, IsDeleted FROM Contact WHERE Id IN ({})".format(", ".join(f"'{i}'" for i in ids))
    assert _ids(sf.query(wanted)) == ids[1:]
    everything = sf.query_all(wanted, include_deleted=True)["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in everything] == [
        (ids[0], True),
        (ids[1], False),
        (ids[2], False),
    ]
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 499
    deleted = sf.query("SELECT COUNT() FROM Contact WHERE IsDeleted = true", include_deleted=True)
    assert deleted["totalSize"] == 1, "query_all would recount records, and COUNT() has none"


def test_pages_follow_next_records_url_and_return_every_row_once(sf, tls_admin):
    first = sf.query("SELECT Id FROM Contact ORDER BY Id", headers={"Sforce-Query-Options": "batchSize=50"})
    assert len(first["records"]) == 200, "batch sizes under 200 are raised to 200"
    assert (first["totalSize"], first["done"]) == (500, False)
    assert re.fullmatch(r"/services/data/v59\.0/query/01gSb\d{10}-200", first["nextRecordsUrl"])

    tls_admin.reset_stats()
    everything = sf.query_all("SELECT Id FROM Contact ORDER BY Id", headers=BATCH_200)
    ids = _ids(everything)
    assert len(ids) == len(set(ids)) == 500 and ids == sorted(ids)
    assert tls_admin.requests(crm="salesforce", endpoint="query") == 1
    assert tls_admin.requests(crm="salesforce", endpoint="query_more") == 2


def test_stamp_cursor_with_id_tie_break_loses_nothing_inside_a_tie(sf, tls_admin):
    tls_admin.freeze()
    tied = tls_admin.create("salesforce", "Contact", [{"LastName": f"Tie {n}"} for n in range(250)])
    stamp = parse_datetime_ms(tls_admin.get("salesforce", "Contact", tied[0])["SystemModstamp"])
    cursor = (
        f"SELECT Id, SystemModstamp FROM Contact WHERE SystemModstamp >= {_soql_time(stamp)} "
        "ORDER BY SystemModstamp, Id"
    )
    first = sf.query(cursor, headers=BATCH_200)
    assert len(first["records"]) == 200 and not first["done"]
    assert {r["SystemModstamp"] for r in first["records"]} == {_soql_time(stamp)}
    strict = sf.query(f"SELECT Id FROM Contact WHERE SystemModstamp > {_soql_time(stamp)}")
    assert strict["totalSize"] == 0, "a strict '>' on the last stamp seen would drop the other 50"
    rest = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True, headers=BATCH_200)
    assert rest["done"] and _ids(first) + _ids(rest) == tied


def test_writes_between_pages_do_not_break_a_cursor(sf, tls_admin):
    first = sf.query("SELECT Id FROM Contact ORDER BY Id", headers=BATCH_200)
    upcoming = [f"003Sb{i:010d}AAA" for i in (250, 300)]
    tls_admin.delete("salesforce", "Contact", upcoming[1:])
    tls_admin.update("salesforce", "Contact", upcoming[:1], {"Title": "Edited mid-sync"})
    created = sf.Contact.create({"LastName": "Mid-sync"})["id"]
    ids = _ids(first)
    page = first
    while not page["done"]:
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True, headers=BATCH_200)
        ids += _ids(page)
    assert len(ids) == len(set(ids)) == 500
    assert upcoming[0] in ids and upcoming[1] not in ids and ids[-1] == created


def test_count_uses_the_same_filter_as_the_rows(sf):
    where = "WHERE SystemModstamp >= 2025-01-01T00:00:00Z AND SystemModstamp < 2025-07-01T00:00:00.000+0000"
    counted = sf.query(f"SELECT COUNT() FROM Contact {where}")
    assert counted["records"] == [] and counted["done"]
    rows = sf.query_all(f"SELECT Id, SystemModstamp FROM Contact {where}")["records"]
    assert 0 < counted["totalSize"] == len(rows) < 500
    assert all("2025-01-01" <= r["SystemModstamp"] < "2025-07-01" for r in rows)


@pytest.mark.parametrize(
    "soql_text, code",
    [
        ("SELECT Id FORM Contact", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Email = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact LIMIT -1", "MALFORMED_QUERY"),
        ("'; DROP TABLE Contact; --", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE CreatedDate > 2024-02-30T00:00:00Z", "MALFORMED_QUERY"),
        ("SELECT Foo FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Lead", "INVALID_TYPE"),
    ],
)
def test_bad_soql_is_a_400_with_an_error_array_never_a_500(sf, soql_text, code):
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.query(soql_text)
    assert refused.value.status == 400 and refused.value.content[0]["errorCode"] == code
    assert refused.value.content[0]["message"]


def test_query_locators_are_validated_and_expire_after_fifteen_idle_minutes(sf, tls_admin):
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        sf.query_more("/services/data/v59.0/query/01gSb9999999999-2000", identifier_is_url=True)
    assert unknown.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
    first = sf.query("SELECT Id FROM Contact", headers=BATCH_200)
    retried = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert _ids(retried) == _ids(sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)), (
        "a lost page can be fetched again"
    )
    tls_admin.advance(16 * 60)
    with pytest.raises(SalesforceMalformedRequest) as expired:
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert expired.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


# ------------------------------------------------------------------ records
def test_record_crud(sf):
    created = sf.Contact.create(
        {"lastname": "Lovelace", "Email": "ada@example.com", "AccountId": "001Sb0000000001AAA"}
    )
    assert created["success"] and created["errors"] == []
    record = sf.Contact.get(created["id"])
    assert record["LastName"] == "Lovelace" and record["HasOptedOutOfEmail"] is False
    assert record["IsDeleted"] is False
    assert record["CreatedDate"] == record["SystemModstamp"] and SF_DATETIME.match(record["CreatedDate"])
    assert sf.Contact.update(created["id"], {"Title": "Countess"}) == 204
    assert sf.Contact.get(created["id"])["Title"] == "Countess"
    assert sf.Contact.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.get(created["id"])
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.Contact.get("003Sb9999999999AAA")
    assert missing.value.content == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]


@pytest.mark.parametrize(
    "fields, code, named",
    [
        ({"Email": "ada@example.com"}, "REQUIRED_FIELD_MISSING", ["LastName"]),
        ({"LastName": "X", "Nickname__c": "Ada"}, "INVALID_FIELD", ["Nickname__c"]),
        (
            {"LastName": "X", "CreatedDate": "2024-01-01T00:00:00Z"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            ["CreatedDate"],
        ),
        ({"LastName": "X", "Email": "ada at example.com"}, "INVALID_EMAIL_ADDRESS", ["Email"]),
        ({"LastName": "X", "AccountId": "001Sb0000099999AAA"}, "INVALID_CROSS_REFERENCE_KEY", ["AccountId"]),
        ({"LastName": "X", "HasOptedOutOfEmail": "sometimes"}, "JSON_PARSER_ERROR", ["HasOptedOutOfEmail"]),
    ],
)
def test_invalid_writes_are_refused_with_the_field_named(sf, fields, code, named):
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Contact.create(fields)
    assert refused.value.content[0]["errorCode"] == code and refused.value.content[0]["fields"] == named
    if code == "REQUIRED_FIELD_MISSING":
        assert refused.value.content[0]["message"] == "Required fields are missing: [LastName]"


def test_upsert_by_external_id_creates_then_updates(sf, tls_admin):
    created = sf.Contact.upsert("External_Id__c/ext-1", {"LastName": "Hopper"}, raw_response=True)
    assert created.status_code == 201
    assert created.json() == {"id": created.json()["id"], "success": True, "errors": [], "created": True}
    updated = sf.Contact.upsert("External_Id__c/ext-1", {"Title": "Rear Admiral"}, raw_response=True)
    assert updated.status_code == 200 and updated.json()["created"] is False
    assert updated.json()["id"] == created.json()["id"]
    record = sf.Contact.get_by_custom_id("External_Id__c", "ext-1")
    assert (record["LastName"], record["Title"]) == ("Hopper", "Rear Admiral")
    assert sf.query("SELECT COUNT() FROM Contact WHERE External_Id__c = 'ext-1'")["totalSize"] == 1

    tls_admin.create("salesforce", "Contact", [{"LastName": "Twin", "External_Id__c": "twin"}] * 2)
    with pytest.raises(SalesforceMoreThanOneRecord) as ambiguous:
        sf.Contact.upsert("External_Id__c/twin", {"Title": "Which one?"})
    assert ambiguous.value.status == 300 and len(ambiguous.value.content) == 2


def test_composite_upsert_reports_per_record_and_honours_all_or_none(sf):
    def upsert(records, all_or_none=False):
        typed = [{"attributes": {"type": "Contact"}, **r} for r in records]
        body = {"allOrNone": all_or_none, "records": typed}
        return sf.restful("composite/sobjects/Contact/External_Id__c", method="PATCH", json=body)

    first = upsert([{"External_Id__c": "a", "LastName": "Ada"}, {"External_Id__c": "b", "LastName": "Bob"}])
    assert [(r["success"], r["created"]) for r in first] == [(True, True), (True, True)]
    mixed = upsert([{"External_Id__c": "a", "Title": "Updated"}, {"External_Id__c": "c", "Title": "No name"}])
    assert (mixed[0]["success"], mixed[0]["created"], mixed[0]["id"]) == (True, False, first[0]["id"])
    assert mixed[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName]",
                "fields": ["LastName"],
            }
        ],
    }
    rolled_back = upsert([{"External_Id__c": "b", "Title": "Never written"}, {"External_Id__c": "d"}], True)
    assert [r["errors"][0]["statusCode"] for r in rolled_back] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "REQUIRED_FIELD_MISSING",
    ]
    assert sf.Contact.get(first[1]["id"])["Title"] is None
    with pytest.raises(SalesforceMalformedRequest) as too_many:
        upsert([{"External_Id__c": f"x{n}", "LastName": "X"} for n in range(201)])
    assert too_many.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


# ------------------------------------------------------------------ metadata
def test_describe_is_enough_for_a_mapping_checker(sf):
    described = sf.Contact.describe()
    assert (described["name"], described["keyPrefix"], described["queryable"]) == ("Contact", "003", True)
    fields = {f["name"]: f for f in described["fields"]}
    assert fields["Email"]["type"] == "email" and fields["SystemModstamp"]["type"] == "datetime"
    assert not fields["LastName"]["nillable"] and fields["LastName"]["createable"]
    assert not fields["SystemModstamp"]["updateable"] and fields["External_Id__c"]["externalId"]
    assert "Web" in [v["value"] for v in fields["LeadSource"]["picklistValues"]]
    account = fields["AccountId"]
    assert (account["referenceTo"], account["relationshipName"]) == (["Account"], "Account")
    assert {s["name"] for s in sf.describe()["sobjects"]} == {"Contact", "Account", "Case"}
    assert sf.Case.metadata()["objectDescribe"]["keyPrefix"] == "500"


def test_versions_resources_and_limits(sf, tls_sandbox):
    versions = _raw(tls_sandbox, "/services/data").json()
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions
    assert sf.restful("")["query"] == "/services/data/v59.0/query"
    limits = sf.limits()["DailyApiRequests"]
    assert limits["Max"] == 100_000 and 0 < limits["Remaining"] < 100_000


def test_updated_and_deleted_cover_whole_minutes(sf, tls_admin):
    now_ms = tls_admin.clock()["now_ms"]
    minute = now_ms - now_ms % 60_000
    tls_admin.freeze(salesforce_datetime(minute))
    kept, dropped = (sf.Contact.create({"LastName": name})["id"] for name in ("Kept", "Dropped"))
    sf.Contact.delete(dropped)
    tls_admin.advance(120)
    start = dt.datetime.fromtimestamp((minute - 60_000) / 1000, tz=dt.timezone(dt.timedelta(hours=2)))
    end = dt.datetime.fromtimestamp((minute + 120_000) / 1000, tz=dt.UTC)
    updated = sf.Contact.updated(start, end)
    assert updated == {"ids": [kept], "latestDateCovered": salesforce_datetime(minute + 120_000)}
    deleted = sf.Contact.deleted(start, end)
    assert deleted["deletedRecords"] == [{"id": dropped, "deletedDate": salesforce_datetime(minute)}]
    assert SF_DATETIME.match(deleted["earliestDateAvailable"])
    with pytest.raises(SalesforceMalformedRequest) as too_old:
        sf.Contact.updated(end - dt.timedelta(days=31), end)
    assert too_old.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"


# ------------------------------------------------------------------ auth, limits, automation
def test_expired_token_is_invalid_session_id_and_cursors_outlive_it(sf, tls_sandbox, tls_admin):
    first = sf.query("SELECT Id FROM Contact ORDER BY Id", headers=BATCH_200)
    tls_admin.tokens("salesforce", "expire")
    with pytest.raises(SalesforceExpiredSession) as expired:
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert expired.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    fresh = _client(tls_sandbox, _token(tls_sandbox).json()["access_token"])
    assert len(fresh.query_more(first["nextRecordsUrl"], identifier_is_url=True)["records"]) == 200
    fresh.session.close()


def test_exhausted_daily_budget_and_injected_limit_are_403(sf, tls_sandbox, tls_admin):
    tls_admin.inject("rate_limit", crm="salesforce", count=1)
    with pytest.raises(SalesforceRefusedRequest) as injected:
        sf.query("SELECT Id FROM Contact LIMIT 1")
    assert injected.value.content == [
        {"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}
    ]
    assert sf.query("SELECT Id FROM Contact LIMIT 1")["totalSize"] == 1

    tls_admin.set_limits(salesforce_daily=5, salesforce_used=5)
    with pytest.raises(SalesforceRefusedRequest) as exhausted:
        sf.query("SELECT Id FROM Contact LIMIT 1")
    assert exhausted.value.status == 403
    assert exhausted.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    refused = _raw(tls_sandbox, "/services/data/v59.0/limits", sf.session_id)
    assert refused.status_code == 403 and refused.headers["Sforce-Limit-Info"] == "api-usage=5/5"


def test_every_api_error_carries_the_limit_header(sf, tls_sandbox):
    for path, token, status in [
        ("/services/data/v59.0/query?q=SELECT", sf.session_id, 400),
        ("/services/data/v59.0/sobjects/Lead/describe", sf.session_id, 404),
        ("/services/data/vX/query?q=SELECT+Id+FROM+Contact", sf.session_id, 404),
        ("/services/nothing/here", None, 404),
        ("/services/data/v59.0/query?q=SELECT+Id+FROM+Contact", None, 401),
    ]:
        response = _raw(tls_sandbox, path, token)
        assert response.status_code == status, path
        assert isinstance(response.json(), list) and response.json()[0]["errorCode"], path
        assert response.headers["Sforce-Limit-Info"].startswith("api-usage="), path


def test_frozen_and_automation_changes_move_the_stamps_as_salesforce_would(sf, tls_admin):
    contact = "003Sb0000000010AAA"
    before = sf.Contact.get(contact)
    tls_admin.freeze()
    cutoff = _soql_time(tls_admin.clock()["now_ms"])
    changed_since = f"SELECT Id FROM Contact WHERE SystemModstamp > {cutoff}"
    tls_admin.advance(60)
    tls_admin.update("salesforce", "Contact", [contact], {"Title": "Frozen edit"}, mode="frozen")
    assert sf.Contact.get(contact)["Title"] == "Frozen edit"
    assert sf.query(changed_since)["totalSize"] == 0, "the frozen edit is invisible to a stamp cursor"
    tls_admin.advance(60)
    tls_admin.update("salesforce", "Contact", [contact], {"Title": "Flow edit"}, mode="automation")
    assert _ids(sf.query(changed_since)) == [contact]
    after = sf.Contact.get(contact)
    assert after["LastModifiedDate"] == before["LastModifiedDate"] < after["SystemModstamp"]


def test_composite_update_by_id_reports_per_record_and_never_creates(sf, tls_admin):
    def update(records, all_or_none=False):
        body = {"allOrNone": all_or_none, "records": records}
        return sf.restful("composite/sobjects", method="PATCH", json=body)

    contact, case = "003Sb0000000001AAA", "500Sb0000000002AAA"
    tls_admin.delete("salesforce", "Contact", ["003Sb0000000003AAA"])
    results = update(
        [
            {"attributes": {"type": "Contact"}, "Id": contact, "Title": "Updated"},
            {"attributes": {"type": "Case"}, "Id": case, "Subject": "Also updated"},
            {"attributes": {"type": "Contact"}, "Id": "003Sb0000099999AAA", "Title": "Nobody"},
            {"attributes": {"type": "Contact"}, "Id": "003Sb0000000003AAA", "Title": "Deleted"},
            {"attributes": {"type": "Contact"}, "Id": "001Sb0000000001AAA", "Title": "An account"},
            {"attributes": {"type": "Contact"}, "Title": "No id"},
            {"attributes": {"type": "Contact"}, "Id": contact, "CreatedDate": "2020-01-01T00:00:00Z"},
        ]
    )
    assert results[:2] == [
        {"id": contact, "success": True, "errors": []},
        {"id": case, "success": True, "errors": []},
    ]
    assert [r["errors"][0]["statusCode"] for r in results[2:]] == [
        "INVALID_CROSS_REFERENCE_KEY",
        "ENTITY_IS_DELETED",
        "MALFORMED_ID",
        "MISSING_ARGUMENT",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
    ]
    assert sf.Contact.get(contact)["Title"] == "Updated" and sf.Case.get(case)["Subject"] == "Also updated"
    assert sf.query("SELECT COUNT() FROM Contact WHERE Title = 'Nobody'")["totalSize"] == 0

    rolled_back = update(
        [
            {"attributes": {"type": "Contact"}, "Id": contact, "Title": "Never written"},
            {"attributes": {"type": "Contact"}, "Id": "003Sb0000099999AAA", "Title": "Nobody"},
        ],
        all_or_none=True,
    )
    assert [r["errors"][0]["statusCode"] for r in rolled_back] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "INVALID_CROSS_REFERENCE_KEY",
    ]
    assert sf.Contact.get(contact)["Title"] == "Updated"
    with pytest.raises(SalesforceMalformedRequest) as too_many:
        update([{"attributes": {"type": "Contact"}, "Id": contact}] * 201)
    assert too_many.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
