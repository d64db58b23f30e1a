import httpx
import pytest
import requests

from sync_platform.sandbox import SandboxConfig, SandboxServer


def test_info_lists_objects_and_credentials(admin, sandbox):
    info = admin.info()
    assert info["objects"]["salesforce"]["Contact"]["records"] == 500
    assert info["objects"]["hubspot"]["companies"]["records"] == 50
    assert info["credentials"]["dynamics"]["token_url"].startswith(sandbox.base_url)


def test_create_update_delete_round_trip(admin):
    ids = admin.create("salesforce", "Contact", [{"LastName": "Lovelace", "Email": "ada@example.com"}])
    assert admin.get("salesforce", "Contact", ids[0])["Email"] == "ada@example.com"
    admin.update("salesforce", "Contact", ids, {"Title": "Countess"}, mode="automation")
    rec = admin.get("salesforce", "Contact", ids[0])
    assert rec["Title"] == "Countess" and rec["SystemModstamp"] > rec["LastModifiedDate"]
    admin.delete("salesforce", "Contact", ids)
    assert admin.get("salesforce", "Contact", ids[0])["_deleted"] is True


def test_touch_edits_many_records_in_one_call(admin):
    result = admin.touch("hubspot", "contacts", 120, stride=2)
    assert result["touched"] == 120 and result["field"] == "jobtitle"
    assert admin.get("hubspot", "contacts", result["last_id"])["jobtitle"].startswith("edited")


def test_clock_freeze_and_advance(admin):
    frozen = admin.freeze("2026-06-01T00:00:00Z")
    assert frozen["frozen"] and frozen["now"] == "2026-06-01T00:00:00.000Z"
    assert admin.advance(90)["now"] == "2026-06-01T00:01:30.000Z"


def test_every_response_is_dated_by_the_sandbox_clock_as_a_crm_dates_by_its_own(sandbox, admin):
    """Clients tell a future stamp by the CRM's ``Date``: it must follow a moved clock, once."""
    admin.freeze("2030-01-02T03:04:05Z")
    for path in ("/__sandbox/clock", "/services/data", "/no/such/path"):
        response = httpx.get(f"{sandbox.base_url}{path}")
        assert response.headers.get_list("date") == ["Wed, 02 Jan 2030 03:04:05 GMT"], path


@pytest.mark.parametrize(
    "body, message",
    [
        ({"records": []}, "non-empty list"),
        ({"records": [{"NoSuchField": 1}]}, "unknown field 'NoSuchField'"),
        ({"records": [{"LastName": "x"}], "mode": "sideways"}, "mode must be one of"),
    ],
)
def test_bad_admin_input_gets_a_clear_400(sandbox, body, message):
    response = httpx.post(f"{sandbox.base_url}/__sandbox/salesforce/Contact/records", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_unknown_object_and_fault_fields_are_named(sandbox):
    r = httpx.post(f"{sandbox.base_url}/__sandbox/salesforce/Lead/records", json={"records": [{}]})
    assert r.status_code == 404 and "unknown object salesforce/Lead" in r.json()["error"]
    r = httpx.post(f"{sandbox.base_url}/__sandbox/faults", json={"kind": "error", "colour": "red"})
    assert r.status_code == 400 and "colour" in r.json()["error"]


def test_counters_record_requests_per_endpoint(sandbox, admin):
    admin.reset_stats()
    httpx.get(f"{sandbox.base_url}/api/data/v9.2/contacts")  # no token: 401
    assert admin.requests(crm="dynamics", status=401) == 1


def test_tls_sandbox_is_verifiable_with_its_own_ca(tls_sandbox):
    response = requests.get(f"{tls_sandbox.base_url}/__sandbox/clock", verify=tls_sandbox.ca_file, timeout=10)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_sandbox.base_url}/__sandbox/clock", timeout=10)


def test_server_stops_cleanly_and_frees_the_port():
    server = SandboxServer(SandboxConfig(contacts=10)).start()
    port = server.port
    assert httpx.get(f"{server.base_url}/__sandbox/clock").status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/__sandbox/clock", timeout=2)
