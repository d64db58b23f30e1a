"""The Dynamics 365 / Dataverse dialect, driven over plain HTTP the way a Web API client drives it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sync_platform.sandbox import SandboxServer
from sync_platform.sandbox.client import SandboxAdminClient

API = "/api/data/v9.2"
TENANT = "sandbox-tenant"
SCOPE = "https://sandbox.crm.dynamics.com/.default"
# after every generated stamp (they end on 2025-12-31), so "modified since" means "touched by the test"
FROZEN_AT = "2026-06-01T00:00:00Z"


def _token(base_url: str, secret: str = "sandbox-secret", tenant: str = TENANT) -> httpx.Response:
    return httpx.post(
        f"{base_url}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": secret,
            "scope": SCOPE,
        },
    )


@pytest.fixture
def api(sandbox: SandboxServer, admin: SandboxAdminClient) -> Iterator[httpx.Client]:
    """An authenticated client on a sandbox whose clock is frozen at FROZEN_AT."""
    admin.freeze(FROZEN_AT)
    token = _token(sandbox.base_url).json()["access_token"]
    with httpx.Client(
        base_url=sandbox.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        yield client


def _pages(
    api: httpx.Client, path: str, params: dict | None = None, headers: dict | None = None
) -> tuple[list[dict], list[dict]]:
    """Every row of a query following @odata.nextLink, and each page's body."""
    bodies = [api.get(path, params=params, headers=headers).raise_for_status().json()]
    while "@odata.nextLink" in bodies[-1]:
        bodies.append(api.get(bodies[-1]["@odata.nextLink"], headers=headers).raise_for_status().json())
    return [row for body in bodies for row in body["value"]], bodies


def _assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["code"].startswith("0x") and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_client_credentials_token_and_its_failures(sandbox: SandboxServer) -> None:
    ok = _token(sandbox.base_url)
    assert ok.status_code == 200
    body = ok.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == body["ext_expires_in"] == 3600
    who = httpx.get(
        f"{sandbox.base_url}{API}/WhoAmI", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert who.status_code == 200 and "UserId" in who.json()

    wrong = _token(sandbox.base_url, secret="not-the-secret")
    assert wrong.status_code == 401
    error = wrong.json()
    assert error["error"] == "invalid_client" and error["error_codes"] == [7000215]
    assert error["error_description"].startswith("AADSTS7000215: Invalid client secret provided")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(error)

    other_tenant = _token(sandbox.base_url, tenant="someone-else")
    assert other_tenant.status_code == 400 and other_tenant.json()["error_codes"] == [90002]


def test_maxpagesize_pages_return_every_contact_once(api: httpx.Client, admin: SandboxAdminClient) -> None:
    admin.reset_stats()
    headers = {"Prefer": "odata.maxpagesize=100"}
    first = api.get("/contacts", params={"$select": "fullname"}, headers=headers)
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=100"
    rows, bodies = _pages(api, "/contacts", {"$select": "fullname"}, headers)
    ids = [row["contactid"] for row in rows]
    assert len(ids) == len(set(ids)) == 500
    assert ids == sorted(ids)  # GUID order is the default order
    assert [len(b["value"]) for b in bodies] == [100] * 5
    assert bodies[0]["@odata.context"].endswith(f"{API}/$metadata#contacts(fullname)")
    assert "$skiptoken=" in bodies[0]["@odata.nextLink"] and bodies[0]["@odata.nextLink"].startswith("http")
    assert admin.requests(crm="dynamics", endpoint="query") == 1 + 5


def test_modifiedon_filter_finds_exactly_the_touched_records(
    api: httpx.Client, admin: SandboxAdminClient
) -> None:
    admin.advance(0.4)  # stamps land at .400 s; Dataverse shows and compares whole seconds
    touched = admin.touch("dynamics", "contacts", 7, start=3, stride=11)["ids"]
    params = {
        "$select": "fullname,modifiedon",
        "$filter": f"modifiedon ge {FROZEN_AT}",
        "$orderby": "modifiedon,contactid",
        "$count": "true",
    }
    body = api.get("/contacts", params=params).raise_for_status().json()
    assert [row["contactid"] for row in body["value"]] == sorted(touched)
    assert body["@odata.count"] == 7
    assert all(set(row) == {"@odata.etag", "contactid", "fullname", "modifiedon"} for row in body["value"])
    assert {row["modifiedon"] for row in body["value"]} == {FROZEN_AT}

    strictly_after = api.get("/contacts", params={"$filter": f"modifiedon gt {FROZEN_AT}"}).json()
    assert strictly_after["value"] == []
    newest = api.get(
        "/contacts", params={"$orderby": "modifiedon desc", "$top": "7", "$select": "modifiedon"}
    ).json()
    assert sorted(row["contactid"] for row in newest["value"]) == sorted(touched)


def test_rows_sharing_a_displayed_second_are_ordered_by_id(
    api: httpx.Client, admin: SandboxAdminClient
) -> None:
    """Stored stamps have milliseconds but clients see seconds: a (modifiedon, id) keyset must
    find the rows in that order, or a client-side cursor skips rows."""
    ids = [
        r["contactid"]
        for r in api.get("/contacts", params={"$top": "2", "$select": "fullname"}).json()["value"]
    ]
    admin.advance(0.1)
    admin.update("dynamics", "contacts", [ids[1]], {"jobtitle": "first at .100"})
    admin.advance(0.5)
    admin.update("dynamics", "contacts", [ids[0]], {"jobtitle": "second at .600"})
    for order, expected in (("modifiedon,contactid", ids), ("modifiedon desc,contactid desc", ids[::-1])):
        rows, _ = _pages(
            api,
            "/contacts",
            {"$filter": f"modifiedon ge {FROZEN_AT}", "$orderby": order},
            {"Prefer": "odata.maxpagesize=1"},
        )
        assert [r["contactid"] for r in rows] == expected, order


def test_filter_functions_and_sorting_agree_with_the_rows(api: httpx.Client) -> None:
    rows, _ = _pages(api, "/contacts")
    parent = rows[0]["_parentcustomerid_value"]
    cases = {
        "startswith(lastname,'s')": lambda r: r["lastname"].lower().startswith("s"),
        "contains(emailaddress1,'.example.') and donotemail eq true": lambda r: (
            ".example." in (r["emailaddress1"] or "").lower() and r["donotemail"]
        ),
        "firstname eq null": lambda r: r["firstname"] is None,
        "not (statecode eq 0) or jobtitle eq 'CTO'": lambda r: r["statecode"] != 0 or r["jobtitle"] == "CTO",
        "Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=['Smith','kim'])": lambda r: (
            r["lastname"].lower() in ("smith", "kim")
        ),
        f"_parentcustomerid_value eq {parent}": lambda r: r["_parentcustomerid_value"] == parent,
        "endswith(fullname,'n') and modifiedon lt 2024-07-01": lambda r: (
            r["fullname"].lower().endswith("n") and r["modifiedon"] < "2024-07-01"
        ),
    }
    for expression, keep in cases.items():
        expected = [r["contactid"] for r in rows if keep(r)]
        got = api.get("/contacts", params={"$filter": expression, "$select": "lastname"}).json()["value"]
        assert [r["contactid"] for r in got] == expected, expression
        assert expected, f"{expression} selects nothing: a weak case"

    ordered, bodies = _pages(
        api, "/contacts", {"$orderby": "lastname desc,firstname"}, {"Prefer": "odata.maxpagesize=70"}
    )
    expected = sorted(rows, key=lambda r: r["contactid"])
    expected.sort(key=lambda r: (r["firstname"] is not None, (r["firstname"] or "").casefold()))
    expected.sort(key=lambda r: r["lastname"].casefold(), reverse=True)
    assert [r["contactid"] for r in ordered] == [r["contactid"] for r in expected]
    assert len(bodies) == 8


def test_change_tracking_returns_changes_and_deletions_once(
    api: httpx.Client, admin: SandboxAdminClient
) -> None:
    headers = {"Prefer": "odata.track-changes,odata.maxpagesize=200"}
    initial, bodies = _pages(api, "/contacts", {"$select": "fullname,jobtitle"}, headers)
    assert len({r["contactid"] for r in initial}) == 500 and len(bodies) == 3
    assert "@odata.deltaLink" in bodies[-1] and "@odata.deltaLink" not in bodies[0]
    delta_link = bodies[-1]["@odata.deltaLink"]
    assert "$deltatoken=" in delta_link and "$select=fullname,jobtitle" in delta_link

    ids = [r["contactid"] for r in initial]
    changed, removed = ids[10:13], ids[100:102]
    admin.update("dynamics", "contacts", changed, {"jobtitle": "Chief Delta Officer"})
    admin.delete("dynamics", "contacts", removed)

    delta = api.get(delta_link).raise_for_status().json()
    rows = [e for e in delta["value"] if "reason" not in e]
    gone = [e for e in delta["value"] if e.get("reason") == "deleted"]
    assert sorted(r["contactid"] for r in rows) == sorted(changed)
    assert {r["jobtitle"] for r in rows} == {"Chief Delta Officer"}
    assert all(set(r) == {"@odata.etag", "contactid", "fullname", "jobtitle"} for r in rows)
    assert sorted(e["id"] for e in gone) == sorted(removed) and len(delta["value"]) == 5
    assert all(e["@odata.context"].endswith(f"{API}/$metadata#contacts/$deletedEntity") for e in gone)

    again = api.get(delta["@odata.deltaLink"]).raise_for_status().json()
    assert again["value"] == [] and "@odata.deltaLink" in again


def test_delta_pages_and_rejected_options(
    sandbox: SandboxServer, api: httpx.Client, admin: SandboxAdminClient
) -> None:
    body = api.get("/accounts", headers={"Prefer": "odata.track-changes"}).raise_for_status().json()
    first_round = admin.touch("dynamics", "accounts", 25)["ids"]
    small = {"Prefer": "odata.maxpagesize=10"}
    pages = [api.get(body["@odata.deltaLink"], headers=small).raise_for_status().json()]
    later = admin.touch("dynamics", "accounts", 5, start=40)["ids"]  # while the client is still paging
    while "@odata.nextLink" in pages[-1]:
        pages.append(api.get(pages[-1]["@odata.nextLink"], headers=small).raise_for_status().json())
    assert (
        sorted(r["accountid"] for p in pages for r in p["value"]) == sorted(first_round) and len(pages) == 3
    )
    next_round = api.get(pages[-1]["@odata.deltaLink"]).json()["value"]
    assert sorted(r["accountid"] for r in next_round) == sorted(later)

    for option in ({"$filter": "name eq 'x'"}, {"$orderby": "name"}, {"$top": "5"}):
        refused = api.get("/accounts", params=option, headers={"Prefer": "odata.track-changes"})
        assert "change tracking" in _assert_error(refused, 400, "0x80048d0b")["message"].lower()
    _assert_error(api.get("/accounts", params={"$deltatoken": "not-a-token"}), 400, "0x80044352")

    admin.advance(8 * 86_400)  # past the 7-day token lifetime (and the access token's)
    token = _token(sandbox.base_url).json()["access_token"]
    expired = api.get(pages[-1]["@odata.deltaLink"], headers={"Authorization": f"Bearer {token}"})
    assert "full sync" in _assert_error(expired, 400, "0x80044352")["message"]


def test_frozen_edit_keeps_modifiedon_but_shows_in_the_delta(
    api: httpx.Client, admin: SandboxAdminClient
) -> None:
    body = (
        api.get("/contacts", params={"$select": "jobtitle"}, headers={"Prefer": "odata.track-changes"})
        .raise_for_status()
        .json()
    )
    target = body["value"][42]["contactid"]
    before = api.get(f"/contacts({target})").json()
    admin.update("dynamics", "contacts", [target], {"jobtitle": "Quietly Changed"}, mode="frozen")
    after = api.get(f"/contacts({target})").json()
    assert after["modifiedon"] == before["modifiedon"] and after["jobtitle"] == "Quietly Changed"
    assert after["@odata.etag"] != before["@odata.etag"]

    # a modifiedon cursor taken before the edit (the clock has not moved since) cannot see it
    recent = api.get("/contacts", params={"$filter": f"modifiedon ge {FROZEN_AT}"}).json()["value"]
    assert recent == []

    delta = api.get(body["@odata.deltaLink"]).json()["value"]
    assert [(r["contactid"], r["jobtitle"]) for r in delta] == [(target, "Quietly Changed")]


def test_rate_limit_answers_429_with_retry_after(api: httpx.Client, admin: SandboxAdminClient) -> None:
    admin.set_limits(dynamics_per_5min=3, reset_windows=True)
    assert [api.get("/accounts", params={"$top": "1"}).status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get("/accounts", params={"$top": "1"})
    error = _assert_error(refused, 429, "0x80072322")
    assert error["message"] == "Number of requests exceeded the limit of 3 over time window of 300 seconds."
    assert (
        refused.headers["Retry-After"] == "300"
    )  # the clock is frozen: the oldest request frees up in 300 s
    admin.advance(300)
    assert api.get("/accounts", params={"$top": "1"}).status_code == 200

    admin.set_limits(dynamics_per_5min=6000, reset_windows=True)
    admin.inject("rate_limit", crm="dynamics", count=1, delay=7)
    injected = api.get("/accounts", params={"$top": "1"})
    assert injected.status_code == 429 and injected.headers["Retry-After"] == "7"


def test_patch_upsert_by_alternate_key(api: httpx.Client) -> None:
    url = "/accounts(accountnumber='SBX-0001')"
    representation = {"Prefer": "return=representation"}
    created = api.patch(url, json={"name": "Sandbox One"}, headers={"If-None-Match": "*", **representation})
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["accountnumber"] == "SBX-0001" and account["name"] == "Sandbox One"
    assert created.headers["OData-EntityId"].endswith(f"{API}/accounts({account['accountid']})")

    duplicate = api.patch(url, json={"name": "Again"}, headers={"If-None-Match": "*"})
    error = _assert_error(duplicate, 412, "0x80040237")
    assert error["message"] == "A record with matching key values already exists."

    upserted = api.patch(url, json={"name": "Sandbox One Renamed"})
    assert (
        upserted.status_code == 204
        and upserted.headers["OData-EntityId"] == created.headers["OData-EntityId"]
    )
    current = api.get(f"/accounts({account['accountid']})").json()
    assert current["name"] == "Sandbox One Renamed"
    other_case = api.patch(
        "/accounts(accountnumber='sbx-0001')", json={"telephone1": "555"}, headers={"If-Match": "*"}
    )
    assert (
        other_case.headers["OData-EntityId"] == created.headers["OData-EntityId"]
    )  # keys match case-insensitively
    current = api.get(f"/accounts({account['accountid']})").json()

    stale = api.patch(url, json={"name": "Lost update"}, headers={"If-Match": account["@odata.etag"]})
    _assert_error(stale, 412, "0x80060882")
    fresh = api.patch(
        url, json={"name": "Checked"}, headers={"If-Match": current["@odata.etag"], **representation}
    )
    assert fresh.status_code == 200 and fresh.json()["name"] == "Checked"

    missing = api.patch(
        "/accounts(accountnumber='SBX-404')", json={"name": "Nope"}, headers={"If-Match": "*"}
    )
    _assert_error(missing, 404, "0x80040217")
    assert api.get("/accounts", params={"$filter": "accountnumber eq 'SBX-404'"}).json()["value"] == []
    assert (
        api.get("/accounts", params={"$filter": "accountnumber eq 'sbx-0001'"}).json()["value"][0]["name"]
        == "Checked"
    )  # Dataverse string comparison is case-insensitive


def test_create_with_lookup_bind_and_payload_errors(api: httpx.Client) -> None:
    account = api.get("/accounts", params={"$top": "1"}).json()["value"][0]["accountid"]
    made = api.post(
        "/contacts",
        json={
            "firstname": "Ada",
            "lastname": "Lovelace",
            "parentcustomerid_account@odata.bind": f"/accounts({account})",
        },
    )
    assert made.status_code == 204
    contact_url = made.headers["OData-EntityId"]
    contact = api.get(contact_url).json()
    assert contact["_parentcustomerid_value"] == account and contact["fullname"] == "Ada Lovelace"

    _assert_error(api.post("/contacts", json={"firstname": "No last name"}), 400, "0x80040200")
    unknown = api.post("/contacts", json={"lastname": "X", "favouritecolour": "teal"})
    assert "favouritecolour" in _assert_error(unknown, 400, "0x80060888")["message"]
    nobody = "0000ffff-0001-4000-8000-5a4e0b0c5d1e"
    dangling = api.post(
        "/contacts", json={"lastname": "X", "parentcustomerid_account@odata.bind": f"/accounts({nobody})"}
    )
    _assert_error(dangling, 404, "0x80040217")

    assert api.delete(contact_url).status_code == 204
    _assert_error(api.get(contact_url), 404, "0x80040217")


def test_expired_or_missing_token_is_401_with_a_challenge(
    api: httpx.Client, admin: SandboxAdminClient
) -> None:
    assert api.get("/contacts", params={"$top": "1"}).status_code == 200
    admin.tokens("dynamics", "expire")
    expired = api.get("/contacts", params={"$top": "1"})
    assert expired.status_code == 401
    challenge = expired.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer authorization_uri=http://127.0.0.1:")
    assert (
        f"/{TENANT}/oauth2/authorize" in challenge
        and "resource_id=https://sandbox.crm.dynamics.com/" in challenge
    )
    anonymous = httpx.get(str(api.base_url) + "contacts")
    assert anonymous.status_code == 401 and "WWW-Authenticate" in anonymous.headers


@pytest.mark.parametrize(
    "expression",
    [
        "lastname eq",
        "lastname eq 'unterminated",
        "(lastname eq 'x'",
        "lastname === 'x'",
        "not lastname eq 'x'",
        "modifiedon ge '2024-01-01'",
        "modifiedon ge 2024-13-45T00:00:00Z",
        "statecode eq 'one'",
        "contains(statecode,'1')",
        "frobnicate(lastname,'x')",
        "Microsoft.Dynamics.CRM.LastXDays(PropertyName='x')",
        "nosuchcolumn eq 1",
        "parentcustomerid/name eq 'x'",
        "",
    ],
)
def test_malformed_filter_is_a_dataverse_400(api: httpx.Client, expression: str) -> None:
    _assert_error(api.get("/contacts", params={"$filter": expression}), 400)


def test_unsupported_queries_and_unknown_segments(api: httpx.Client) -> None:
    _assert_error(api.get("/contacts", params={"$skip": "10"}), 400)
    error = _assert_error(api.get("/contacts", params={"$select": "fullname,foo"}), 400, "0x80060888")
    assert (
        error["message"] == "Could not find a property named 'foo' on type 'Microsoft.Dynamics.CRM.contact'."
    )
    missing = _assert_error(api.get("/foo"), 404, "0x80060888")
    assert missing["message"] == "Resource not found for the segment 'foo'."
    _assert_error(api.get("/contacts", params={"$skiptoken": "garbage"}), 400)
    next_link = api.get("/contacts", headers={"Prefer": "odata.maxpagesize=5"}).json()["@odata.nextLink"]
    _assert_error(api.get(next_link.replace("$skiptoken=", "$skiptoken=x")), 400)  # edited by hand
    _assert_error(
        api.get(next_link.replace("/contacts?", "/contacts?$orderby=lastname&")), 400
    )  # other query
    _assert_error(api.get("/contacts", params={"$deltatoken": "0!13/45/2026 99:00:00"}), 400, "0x80044352")


def test_in_on_the_primary_key_reads_just_those_rows_in_guid_order_and_pages(
    api: httpx.Client, admin: SandboxAdminClient
) -> None:
    rows, _ = _pages(api, "/contacts", {"$select": "lastname,statecode"})
    wanted = [r["contactid"] for r in rows[5:40:3]] + [rows[2]["contactid"].upper()]
    admin.delete("dynamics", "contacts", [rows[8]["contactid"]])
    values = ",".join(f"'{g}'" for g in reversed(wanted))
    got, bodies = _pages(
        api,
        "/contacts",
        {
            "$select": "lastname",
            "$filter": f"Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=[{values}]) "
            "and statecode eq 0",
        },
        {"Prefer": "odata.maxpagesize=4"},
    )
    expected = [
        r["contactid"]
        for r in rows
        if r["contactid"] in {w.lower() for w in wanted}
        and r["contactid"] != rows[8]["contactid"]
        and r["statecode"] == 0
    ]
    assert [r["contactid"] for r in got] == expected and len(bodies) > 1


def test_entity_metadata_lists_attributes_under_their_logical_names(api: httpx.Client) -> None:
    attributes = api.get("/EntityDefinitions(LogicalName='contact')/Attributes").raise_for_status().json()
    assert attributes["@odata.context"].endswith("$metadata#EntityDefinitions('contact')/Attributes")
    by_name = {a["LogicalName"]: a for a in attributes["value"]}
    assert {
        "contactid",
        "emailaddress1",
        "telephone1",
        "donotemail",
        "parentcustomerid",
        "modifiedon",
    } <= set(by_name)
    assert "_parentcustomerid_value" not in by_name, "a lookup is listed by its attribute name"
    assert by_name["parentcustomerid"]["AttributeType"] == "Customer"
    assert by_name["parentcustomerid"]["@odata.type"] == "#Microsoft.Dynamics.CRM.LookupAttributeMetadata"
    assert (
        by_name["donotemail"]["AttributeType"] == "Boolean"
        and by_name["donotemail"]["IsValidForRead"] is True
    )
    assert (
        by_name["modifiedon"]["IsValidForUpdate"] is False
        and by_name["firstname"]["IsValidForUpdate"] is True
    )

    selected = (
        api.get(
            "/EntityDefinitions(LogicalName='incident')/Attributes",
            params={"$select": "LogicalName,IsValidForRead"},
        )
        .raise_for_status()
        .json()
    )
    assert selected["@odata.context"].endswith("/Attributes(LogicalName,IsValidForRead)")
    assert set(selected["value"][0]) == {"@odata.type", "MetadataId", "LogicalName", "IsValidForRead"}
    entity = api.get("/EntityDefinitions(LogicalName='account')").raise_for_status().json()
    assert entity["EntitySetName"] == "accounts" and entity["PrimaryIdAttribute"] == "accountid"
    _assert_error(api.get("/EntityDefinitions(LogicalName='lead')/Attributes"), 404, "0x80040217")
    _assert_error(
        api.get("/EntityDefinitions(LogicalName='contact')/Attributes", params={"$select": "Nope"}), 400
    )


def test_change_tracking_is_a_table_setting_and_an_untracked_table_refuses_track_changes(
    api: httpx.Client, admin: SandboxAdminClient
) -> None:
    tracked = {"Prefer": "odata.track-changes"}
    assert api.get("/contacts", params={"$select": "lastname"}, headers=tracked).status_code == 200
    assert admin.set_change_tracking("contacts", False) == {
        "entity_set": "contacts",
        "change_tracking": False,
    }
    error = _assert_error(
        api.get("/contacts", params={"$select": "lastname"}, headers=tracked), 400, "0x80072491"
    )
    assert error["message"] == "Entity contact isn't enabled for change tracking."
    assert api.get("/contacts", params={"$select": "lastname", "$top": "1"}).status_code == 200, (
        "plain reads work"
    )
    assert api.get("/accounts", params={"$select": "name"}, headers=tracked).status_code == 200, "per table"
    admin.set_change_tracking("contacts", True)
    assert api.get("/contacts", params={"$select": "lastname"}, headers=tracked).status_code == 200
    with pytest.raises(RuntimeError, match="Dynamics"):
        admin._call("PUT", "/hubspot/contacts/change_tracking", {"enabled": False})
