"""The HubSpot dialect against the real hubspot-api-client 12, unchanged.

Each test drives the sandbox through the client library a sync would use, and checks the
behaviour a sync depends on: paging, archived listing, date-window search and its 10,000-result
cap, batch upsert/read, rate limits, OAuth expiry, and edits that move no timestamp.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
)
from hubspot.crm.contacts.exceptions import ApiException
from hubspot.crm.tickets import SimplePublicObjectInputForCreate
from hubspot.crm.tickets.exceptions import ApiException as TicketsApiException
from hubspot.oauth.exceptions import ApiException as OAuthApiException

from sync_platform.sandbox import SandboxConfig, SandboxServer
from sync_platform.sandbox.client import SandboxAdminClient

CONTACTS = 500
STAMP = "lastmodifieddate"


def _client(server: SandboxServer, token: str | None = None) -> HubSpot:
    return HubSpot(access_token=token or server.state.config.hubspot_private_app_token, host=server.base_url)


def _body(exc: ApiException) -> dict:
    return json.loads(exc.body)


def _since(ms: int, limit: int = 100, after: str | None = None) -> PublicObjectSearchRequest:
    """The incremental reader's query: records modified at or after ``ms``, oldest first."""
    return PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": STAMP, "operator": "GTE", "value": str(ms)}]}],
        sorts=[{"propertyName": STAMP, "direction": "ASCENDING"}],
        limit=limit,
        after=after,
    )


@pytest.fixture
def client(sandbox: SandboxServer) -> HubSpot:
    return _client(sandbox)


@pytest.fixture(scope="module")
def big_sandbox() -> Iterator[tuple[SandboxServer, SandboxAdminClient]]:
    """12,000 contacts: more than one search can page through."""
    server = SandboxServer(SandboxConfig(contacts=12_000, seed=3)).start()
    try:
        with SandboxAdminClient(server.base_url) as admin:
            admin.set_limits(hubspot_search_per_second=1_000)
            yield server, admin
    finally:
        server.stop()


def test_get_all_pages_through_every_contact_100_at_a_time(
    client: HubSpot, admin: SandboxAdminClient
) -> None:
    contacts = client.crm.contacts.get_all()

    assert len(contacts) == CONTACTS
    assert len({c.id for c in contacts}) == CONTACTS
    assert admin.requests(crm="hubspot", endpoint="list") == math.ceil(CONTACTS / 100)
    first = contacts[0]
    assert set(first.properties) == {
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    }
    assert first.properties["hs_object_id"] == first.id
    assert first.updated_at >= first.created_at


def test_list_honours_properties_and_associations(client: HubSpot) -> None:
    page = client.crm.contacts.basic_api.get_page(
        limit=5, properties=["jobtitle", "no_such_property"], associations=["companies"]
    )

    assert len(page.results) == 5 and page.paging.next.after
    for contact in page.results:
        assert set(contact.properties) == {"createdate", "hs_object_id", "jobtitle", "lastmodifieddate"}
        assert contact.associations["companies"].results[0].type == "contact_to_company"


def test_archived_listing_shows_only_deleted_contacts(client: HubSpot, admin: SandboxAdminClient) -> None:
    client.crm.contacts.basic_api.archive("42")
    admin.delete("hubspot", "contacts", ["7"])

    archived = client.crm.contacts.basic_api.get_page(limit=100, archived=True).results

    assert sorted(c.id for c in archived) == ["42", "7"]
    assert all(c.archived and c.archived_at is not None for c in archived)
    assert len(client.crm.contacts.get_all()) == CONTACTS - 2


def test_date_window_search_returns_exactly_the_touched_contacts(
    client: HubSpot, admin: SandboxAdminClient
) -> None:
    before = admin.clock()["now_ms"]
    touched = admin.touch("hubspot", "contacts", 37, start=10, stride=11)["ids"]

    page = client.crm.contacts.search_api.do_search(_since(before))

    assert page.total == 37
    assert sorted(r.id for r in page.results) == sorted(touched)
    stamps = [r.properties[STAMP] for r in page.results]
    assert stamps == sorted(stamps)
    assert page.paging is None


def test_search_pages_by_offset_until_the_total(client: HubSpot, admin: SandboxAdminClient) -> None:
    before = admin.clock()["now_ms"]
    touched = admin.touch("hubspot", "contacts", 25)["ids"]
    seen: list[str] = []
    after = None
    while True:
        page = client.crm.contacts.search_api.do_search(_since(before, limit=10, after=after))
        seen += [r.id for r in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert sorted(seen) == sorted(touched)


def test_frozen_update_is_invisible_to_a_modified_since_search(
    client: HubSpot, admin: SandboxAdminClient
) -> None:
    before = admin.clock()["now_ms"]
    admin.update("hubspot", "contacts", ["5"], {"jobtitle": "Chief Ghost"}, mode="frozen")
    admin.update("hubspot", "contacts", ["6"], {"jobtitle": "Seen"})

    found = client.crm.contacts.search_api.do_search(_since(before))

    assert [r.id for r in found.results] == ["6"]
    assert (
        client.crm.contacts.basic_api.get_by_id("5", properties=["jobtitle"]).properties["jobtitle"]
        == "Chief Ghost"
    )


def test_search_cannot_page_past_10000_results(big_sandbox: tuple[SandboxServer, SandboxAdminClient]) -> None:
    server, _ = big_sandbox
    search = _client(server).crm.contacts.search_api
    seen: set[str] = set()
    after = None
    while True:
        raw = search.do_search(_since(0, limit=200, after=after), _preload_content=False)
        page = json.loads(raw.data)
        assert page["total"] == 12_000
        seen.update(r["id"] for r in page["results"])
        after = page["paging"]["next"]["after"]
        if len(seen) == 10_000:
            break

    assert after == "10000"  # offered, but following it hits the cap: the silent-truncation trap
    with pytest.raises(ApiException) as refused:
        search.do_search(_since(0, limit=200, after=after))
    assert refused.value.status == 400
    body = _body(refused.value)
    assert body["category"] == "VALIDATION_ERROR" and body["status"] == "error" and body["correlationId"]
    with pytest.raises(ApiException):
        search.do_search(_since(0, limit=101, after="9900"))


def test_search_limit_above_200_is_refused(client: HubSpot) -> None:
    with pytest.raises(ApiException) as refused:
        client.crm.contacts.search_api.do_search(_since(0, limit=201))
    assert refused.value.status == 400 and _body(refused.value)["category"] == "VALIDATION_ERROR"


def test_batch_upsert_by_email_updates_existing_and_creates_new(
    client: HubSpot, admin: SandboxAdminClient
) -> None:
    existing = client.crm.contacts.basic_api.get_by_id("3")
    email = existing.properties["email"].strip()
    inputs = [
        {"idProperty": "email", "id": email.upper(), "properties": {"jobtitle": "Upserted"}},
        {"idProperty": "email", "id": "new.person@example.org", "properties": {"firstname": "New"}},
    ]

    batch = BatchInputSimplePublicObjectBatchInputUpsert(inputs=inputs)
    response = client.crm.contacts.batch_api.upsert(batch)

    assert response.status == "COMPLETE"
    by_new = {r.new: r for r in response.results}
    assert by_new[False].id == "3"
    assert int(by_new[True].id) == CONTACTS + 1
    assert admin.get("hubspot", "contacts", "3")["jobtitle"] == "Upserted"
    created = client.crm.contacts.basic_api.get_by_id("new.person@example.org", id_property="email")
    assert created.id == by_new[True].id and created.properties["firstname"] == "New"


def test_batch_update_refuses_the_whole_batch_for_one_invalid_value_but_not_for_a_missing_record(
    client: HubSpot, admin: SandboxAdminClient
) -> None:
    def update(inputs: list[dict]):
        return client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=inputs))

    with pytest.raises(ApiException) as refused:
        update(
            [
                {"id": "1", "properties": {"jobtitle": "Never written"}},
                {"id": "2", "properties": {"lifecyclestage": "not-a-stage"}},
            ]
        )
    assert refused.value.status == 400 and _body(refused.value)["category"] == "VALIDATION_ERROR"
    assert "INVALID_OPTION" in _body(refused.value)["message"]
    assert admin.get("hubspot", "contacts", "1")["jobtitle"] != "Never written"

    partial = update(
        [
            {"id": "1", "properties": {"jobtitle": "Written"}},
            {"id": "999999", "properties": {"jobtitle": "X"}},
        ]
    )
    assert [r.id for r in partial.results] == ["1"] and partial.num_errors == 1
    assert partial.errors[0].category == "OBJECT_NOT_FOUND" and partial.errors[0].context == {
        "ids": ["999999"]
    }
    assert admin.get("hubspot", "contacts", "1")["jobtitle"] == "Written"


def test_batch_read_returns_found_records_and_reports_missing_ones(client: HubSpot) -> None:
    request = BatchReadInputSimplePublicObjectId(
        inputs=[{"id": "1"}, {"id": "2"}, {"id": "999999"}], properties=["email"], properties_with_history=[]
    )

    response = client.crm.contacts.batch_api.read(request)

    assert sorted(r.id for r in response.results) == ["1", "2"]
    assert response.num_errors == 1
    assert response.errors[0].category == "OBJECT_NOT_FOUND"
    assert response.errors[0].context == {"ids": ["999999"]}


def test_create_without_a_required_property_names_it(client: HubSpot) -> None:
    with pytest.raises(TicketsApiException) as refused:
        client.crm.tickets.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"subject": "Broken"})
        )
    body = _body(refused.value)
    assert refused.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert "hs_pipeline_stage" in body["message"]


def test_burst_gets_429_until_the_window_rolls(client: HubSpot, admin: SandboxAdminClient) -> None:
    admin.set_limits(hubspot_per_10s=5, reset_windows=True)
    api = client.crm.contacts.basic_api
    _, _, headers = api.get_page_with_http_info(limit=1)
    assert headers["X-HubSpot-RateLimit-Max"] == "5" and headers["X-HubSpot-RateLimit-Remaining"] == "4"

    with pytest.raises(ApiException) as limited:
        for _ in range(10):
            api.get_page(limit=1)
    assert limited.value.status == 429
    body = _body(limited.value)
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert admin.requests(crm="hubspot", endpoint="list", status=200) == 5

    admin.advance(10)
    assert len(api.get_page(limit=1).results) == 1


def test_search_has_its_own_limit_and_no_rate_limit_headers(
    client: HubSpot, admin: SandboxAdminClient
) -> None:
    admin.set_limits(hubspot_search_per_second=2, reset_windows=True)
    search = client.crm.contacts.search_api
    _, _, headers = search.do_search_with_http_info(_since(0, limit=1))
    assert not any(h.lower().startswith("x-hubspot-ratelimit") for h in headers)
    search.do_search(_since(0, limit=1))

    with pytest.raises(ApiException) as limited:
        search.do_search(_since(0, limit=1))
    assert limited.value.status == 429 and _body(limited.value)["policyName"] == "SECONDLY"
    assert client.crm.contacts.basic_api.get_page(limit=1).results  # the general limit is untouched

    admin.advance(1)
    assert search.do_search(_since(0, limit=1)).total == CONTACTS


def test_injected_rate_limit_fault_answers_like_hubspot(client: HubSpot, admin: SandboxAdminClient) -> None:
    admin.inject("rate_limit", crm="hubspot", count=1)
    with pytest.raises(ApiException) as limited:
        client.crm.contacts.basic_api.get_page()
    assert limited.value.status == 429 and _body(limited.value)["policyName"] == "TEN_SECONDLY_ROLLING"
    assert client.crm.contacts.basic_api.get_page().results


def test_oauth_refresh_flow_and_expired_token_shape(
    sandbox: SandboxServer, admin: SandboxAdminClient
) -> None:
    cfg = sandbox.state.config
    tokens = _client(sandbox).oauth.tokens_api
    issued = tokens.create(
        grant_type="client_credentials", client_id=cfg.client_id, client_secret=cfg.client_secret
    )
    assert issued.token_type == "bearer" and issued.expires_in > 0
    api = _client(sandbox, issued.access_token).crm.contacts.basic_api
    assert api.get_page(limit=1).results

    admin.tokens("hubspot", "expire")
    admin.advance(30)
    with pytest.raises(ApiException) as expired:
        api.get_page(limit=1)
    body = _body(expired.value)
    assert expired.value.status == 401 and body["category"] == "EXPIRED_AUTHENTICATION"
    seconds = re.fullmatch(
        r"The OAuth token used to make this call expired (\d+) second\(s\) ago\.", body["message"]
    )
    assert seconds is not None and int(seconds.group(1)) >= 30

    refreshed = tokens.create(
        grant_type="refresh_token",
        refresh_token=issued.refresh_token,
        client_id=cfg.client_id,
        client_secret=cfg.client_secret,
    )
    assert refreshed.access_token != issued.access_token
    assert _client(sandbox, refreshed.access_token).crm.contacts.basic_api.get_page(limit=1).results

    with pytest.raises(OAuthApiException) as bad:
        tokens.create(
            grant_type="refresh_token",
            refresh_token="nope",
            client_id=cfg.client_id,
            client_secret=cfg.client_secret,
        )
    assert bad.value.status == 400 and _body(bad.value)["status"] == "BAD_REFRESH_TOKEN"


def test_missing_or_unknown_token_is_invalid_authentication(sandbox: SandboxServer) -> None:
    with pytest.raises(ApiException) as refused:
        _client(sandbox, "not-a-token").crm.contacts.basic_api.get_page()
    assert refused.value.status == 401 and _body(refused.value)["category"] == "INVALID_AUTHENTICATION"


def test_properties_describe_types_for_a_mapping_checker(client: HubSpot) -> None:
    props = {p.name: p for p in client.crm.properties.core_api.get_all("contacts").results}

    stamp = props["lastmodifieddate"]
    assert stamp.type == "datetime" and stamp.modification_metadata.read_only_value
    assert props["hs_email_optout"].type == "bool"
    assert props["lifecyclestage"].type == "enumeration"
    assert "customer" in {o.value for o in props["lifecyclestage"].options}
    assert not props["email"].modification_metadata.read_only_value
