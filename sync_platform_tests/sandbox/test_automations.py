"""The CRMs' own automations: a trigger that fires several times per client write (idempotency rehearsal)."""

from __future__ import annotations

import httpx
import pytest

from sync_platform.sandbox import SandboxServer
from sync_platform.sandbox.client import SandboxAdminClient
from sync_platform.sandbox.store import VERSION


def _changes_of(server: SandboxServer, crm: str, obj: str, record_id: str) -> list[int]:
    """Versions of the change-log entries of one record (Dynamics change tracking reads this log)."""
    store = server.state.store(crm, obj)
    index = store.spec.parse_id(record_id)
    return [v for v, i in store._changes if i == index]


def _token(server: SandboxServer, crm: str) -> str:
    cfg = server.state.config
    if crm == "hubspot":
        return cfg.hubspot_private_app_token
    url = {
        "salesforce": "/services/oauth2/token",
        "dynamics": f"/{cfg.dynamics_tenant}/oauth2/v2.0/token",
    }[crm]
    form = {
        "grant_type": "client_credentials",
        "client_id": cfg.client_id,
        "client_secret": cfg.client_secret,
    }
    if crm == "dynamics":
        form["scope"] = f"https://{cfg.dynamics_org}.crm.dynamics.com/.default"
    return httpx.post(server.base_url + url, data=form).json()["access_token"]


def _client_update(server: SandboxServer, crm: str, record_id: str, fields: dict) -> httpx.Response:
    """One update through the CRM's own REST API, as a sync's writer would send it."""
    path = {
        "salesforce": f"/services/data/v59.0/sobjects/Contact/{record_id}",
        "hubspot": f"/crm/v3/objects/contacts/{record_id}",
        "dynamics": f"/api/data/v9.2/contacts({record_id})",
    }[crm]
    body = {"properties": fields} if crm == "hubspot" else fields
    headers = {"Authorization": f"Bearer {_token(server, crm)}"}
    if crm == "dynamics":
        headers |= {"If-Match": "*", "Prefer": "return=representation"}
    response = httpx.patch(server.base_url + path, json=body, headers=headers)
    assert response.status_code < 300, response.text
    return response


CASES = {  # crm: (object, field the trigger sets, field the client writes, system stamp)
    "salesforce": ("Contact", "Title", "FirstName", "SystemModstamp"),
    "hubspot": ("contacts", "jobtitle", "firstname", "lastmodifieddate"),
    "dynamics": ("contacts", "jobtitle", "firstname", "modifiedon"),
}


@pytest.mark.parametrize("crm", list(CASES))
def test_a_trigger_fires_three_times_on_a_client_write_and_never_on_an_admin_write(
    crm: str, sandbox: SandboxServer, admin: SandboxAdminClient
):
    obj, field, written, stamp = CASES[crm]
    added = admin.add_automation(crm, obj, field, "Set by trigger", times=3)
    assert added == {"id": 1, "field": field, "value": "Set by trigger", "times": 3}
    assert admin.automations(crm, obj) == [added]
    record_id = sandbox.state.store(crm, obj).spec.format_id(7)

    before = admin.get(crm, obj, record_id)
    response = _client_update(sandbox, crm, record_id, {written: "Ada"})
    after = admin.get(crm, obj, record_id)
    assert after[written] == "Ada" and after[field] == "Set by trigger"
    # the client's write, then three firings: four changes, each with its own version and log entry
    assert after["_version"] == before["_version"] + 4
    assert len(_changes_of(sandbox, crm, obj, record_id)) == 4
    assert after[stamp] >= before[stamp]
    if crm == "salesforce":  # the firings are the system's: LastModifiedDate stays the client's write
        assert after["LastModifiedDate"] <= after["SystemModstamp"]
    if crm == "dynamics":  # the answer already shows what the synchronous trigger did
        assert response.json()["jobtitle"] == "Set by trigger"
        assert after["versionnumber"] == 10_000_000 + sandbox.state.store(crm, obj).version

    other = sandbox.state.store(crm, obj).spec.format_id(8)
    admin.update(crm, obj, [other], {written: "Grace"})  # an admin write: no trigger
    assert admin.get(crm, obj, other)[field] != "Set by trigger"
    assert len(_changes_of(sandbox, crm, obj, other)) == 1

    assert admin.clear_automations(crm, obj) == 1 and admin.automations(crm, obj) == []
    _client_update(sandbox, crm, other, {written: "Grace"})
    assert len(_changes_of(sandbox, crm, obj, other)) == 2


def test_a_trigger_fires_on_a_client_create_too(sandbox: SandboxServer, admin: SandboxAdminClient):
    admin.add_automation("hubspot", "contacts", "lifecyclestage", "lead", times=2)
    response = httpx.post(
        f"{sandbox.base_url}/crm/v3/objects/contacts",
        json={"properties": {"email": "new@example.com", "lastname": "New"}},
        headers={"Authorization": f"Bearer {_token(sandbox, 'hubspot')}"},
    )
    assert response.status_code == 201, response.text
    record_id = response.json()["id"]
    assert admin.get("hubspot", "contacts", record_id)["lifecyclestage"] == "lead"
    store = sandbox.state.store("hubspot", "contacts")
    assert store.get(store.spec.parse_id(record_id))[VERSION] == store.version
    assert len(_changes_of(sandbox, "hubspot", "contacts", record_id)) == 3


@pytest.mark.parametrize(
    "body, message",
    [
        ({"field": "NoSuchField", "value": 1}, "unknown field 'NoSuchField'"),
        ({"field": "Title", "value": "x", "times": 0}, "times must be an integer from 1 to 100"),
        ({"field": "Title", "value": "x", "times": "3"}, "times must be an integer"),
        ({"field": "Title"}, "field (a field name) and value are required"),
        ({"field": "Title", "value": "x", "when": "always"}, "unknown automation field(s): when"),
        ({"field": "SystemModstamp", "value": "2026-01-01T00:00:00Z"}, "read-only"),
    ],
)
def test_bad_automations_get_a_clear_400(sandbox: SandboxServer, body: dict, message: str):
    response = httpx.post(f"{sandbox.base_url}/__sandbox/salesforce/Contact/automations", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_a_reset_drops_the_automations(sandbox: SandboxServer, admin: SandboxAdminClient):
    admin.add_automation("dynamics", "contacts", "jobtitle", "x")
    httpx.post(f"{sandbox.base_url}/__sandbox/reset", json={"conflict_share": 0.1}).raise_for_status()
    assert admin.automations("dynamics", "contacts") == []
    assert admin.info()["conflict_share"] == 0.1
    bad = httpx.post(f"{sandbox.base_url}/__sandbox/reset", json={"conflict_share": 2})
    assert bad.status_code == 400 and "conflict_share" in bad.json()["error"]
