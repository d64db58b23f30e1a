"""The review queue page in a real headless Chromium (Debian's, driven by playwright's client):
open conflicts made the way people make them (an outbound change, the same field edited in the
CRM, a sync, an outbound run), decided with the keyboard, written back by the next outbound run.

Chromium comes from ``scripts/ensure_chromium.sh`` (``make test`` runs it); playwright never
downloads a browser here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from sync_platform.cli import app
from sync_platform.core.settings import load_settings
from sync_platform.core.warehouse import Warehouse
from sync_platform.ops.approvals import who
from sync_platform.ops.dead_letters import DeadLetterQueue
from sync_platform.outbound.conflicts import OPEN, ConflictBook
from sync_platform.outbound.review import ReviewServer, build_app

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.timeout(600)


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def answering(url: str, **kwargs: object) -> None:
    """Wait until the server answers (its socket listens before start() returns: no sleep)."""
    with httpx.Client(**kwargs) as client:  # type: ignore[arg-type]
        for _ in range(200):
            try:
                client.get(url, timeout=5)
                return
            except httpx.TransportError:
                continue
    raise AssertionError(f"{url} never answered")


@pytest.fixture
def review() -> Iterator[ReviewServer]:
    server = ReviewServer("127.0.0.1", 0).start()
    answering(server.base_url + "/")
    yield server
    server.stop()


@pytest.fixture
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure_chromium.sh` (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield chromium
        chromium.close()


def tab_to(page, selector: str, limit: int = 60) -> None:
    """Press Tab until ``selector`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
    raise AssertionError(f"{selector} was never reached with Tab")


def open_conflicts(harness, n: int = 4) -> dict[str, str]:
    """``n`` open conflicts on Salesforce contacts (lifecycle_stage is manual_review in sync.yaml):
    the CRM's status changed, ours asks for Active; the first also conflicts on the email, a
    personal field. Returns the CRM's status per record id."""
    harness.run("salesforce")
    rows = harness.rows(
        "SELECT id, customer_status__c FROM raw_salesforce.contacts "
        f"WHERE customer_status__c <> 'Active' ORDER BY id LIMIT {n}"
    )
    theirs = {record_id: "Former" if status != "Former" else "Churned" for record_id, status in rows}
    for i, record_id in enumerate(theirs, 1):
        fields = {"lifecycle_stage": "customer"} | ({"email": "ours.person@example.com"} if i == 1 else {})
        target = f"salesforce:{record_id}"
        cli(
            "outbound",
            "put",
            "contact",
            "--target",
            target,
            "--json",
            json.dumps(fields),
            "--change-id",
            f"r{i}",
        )
    for record_id, status in theirs.items():
        harness.admin.update("salesforce", "Contact", [record_id], {"Customer_Status__c": status})
    harness.admin.update("salesforce", "Contact", list(theirs)[:1], {"Email": "theirs.person@example.org"})
    harness.run("salesforce")
    cli("outbound", "run")
    return theirs


def test_conflicts_are_decided_in_the_browser_with_the_keyboard_and_written_back(
    harness, review, browser, tmp_path
) -> None:
    theirs = open_conflicts(harness)
    ids = list(theirs)
    book = ConflictBook(Warehouse.from_env())
    assert sorted(c.conflict_id for c in book.all(OPEN)) == [f"r{i}:salesforce" for i in range(1, 5)]
    base, me = review.base_url, who()

    page = browser.new_page()
    page.goto(base + "/")
    assert page.locator("text=r1:salesforce").count() == 1
    page.screenshot(path=str(tmp_path / "review-page-list.png"), full_page=True)
    tab_to(page, 'a[href="/conflicts/r1:salesforce"]')
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/conflicts/r1:salesforce")

    rows = {
        row.get_attribute("data-field"): [
            row.locator(f"td.{k}").inner_text() for k in ("base", "crm", "ours")
        ]
        for row in page.locator("#side-by-side tbody tr").all()
    }
    assert rows["lifecycle_stage"][1].startswith(theirs[ids[0]]) and rows["lifecycle_stage"][2] == "Active"
    email = rows["email"]
    assert "ours.person@example.com" not in email[2] and "***" in email[2], "personal values are masked"
    assert "theirs.person@example.org" not in email[1] and "theirs.person" not in page.content()
    shot = tmp_path / "review-page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshots in {tmp_path}")
    tab_to(page, "#accept-ours")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none", "visible focus"
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/")
    assert f"r1:salesforce: our values accepted (decided by {me})" in page.locator("#flash").inner_text()

    # the second with an edit: the form is prefilled with ours, the person types another value
    page.goto(base + "/conflicts/r2:salesforce")
    assert page.locator("#edit-1").input_value() == "Active"
    tab_to(page, "#edit-1")
    page.keyboard.press("Control+A")
    page.keyboard.type("Prospect")
    tab_to(page, "#accept-edit")
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/")
    assert "r2:salesforce: edited values accepted" in page.locator("#flash").inner_text()

    # a POST without the CSRF token (or with a session but no token) changes nothing
    with httpx.Client(base_url=base) as client:
        refused = client.post("/conflicts/r3:salesforce/decide", data={"take": "ours"})
        assert refused.status_code == 403
        client.get("/")  # a session cookie now, still no token in the form
        refused = client.post("/conflicts/r3:salesforce/decide", data={"take": "ours", "csrf_token": "x"})
        assert refused.status_code == 403
        assert "No open conflict matches" in client.get("/", params={"entity": "account"}).text
    assert {c.conflict_id for c in book.all(OPEN)} == {"r3:salesforce", "r4:salesforce"}

    # bulk by rule: every open conflict matching the filter keeps the CRM's value
    page.goto(base + "/?crm=salesforce&strategy=manual_review")
    assert "Open conflicts (2 shown of 2)" in page.content()
    page.locator("text=Accept CRM for all shown").click()
    page.wait_for_url(re.compile(re.escape(base) + r"/\?crm=salesforce&strategy=manual_review"))
    assert "2 conflict(s) CRM's values kept" in page.locator("#flash").inner_text()
    assert "Recently decided" in page.content() and page.locator(f"td:text-is('{me}')").count() == 4
    page.screenshot(path=str(tmp_path / "review-page-decided.png"), full_page=True)
    assert book.all(OPEN) == []

    cli("outbound", "run")  # the decisions are written by the same idempotent path
    record = {i: harness.admin.get("salesforce", "Contact", i) for i in ids}
    assert record[ids[0]]["Customer_Status__c"] == "Active"
    assert record[ids[0]]["Email"] == "ours.person@example.com"
    assert record[ids[1]]["Customer_Status__c"] == "Prospect"
    assert [record[i]["Customer_Status__c"] for i in ids[2:]] == [theirs[i] for i in ids[2:]], "CRM kept"
    audit = [
        json.loads(r[0])
        for r in harness.rows("SELECT details FROM ops.audit_log WHERE step = 'conflict_review'")
    ]
    assert sorted((a["conflict"], a["take"], a["by"]) for a in audit) == [
        ("r1:salesforce", "ours", me),
        ("r2:salesforce", "edit", me),
        ("r3:salesforce", "crm", me),
        ("r4:salesforce", "crm", me),
    ]


def test_a_token_or_users_guard_every_request_and_nothing_secret_is_shown(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SYNC_PLATFORM_REVIEW_TOKEN", "tok-s3cret-value")
    monkeypatch.setenv("SYNC_PLATFORM_REVIEW_USERS", "ana:pw-ana-1")
    server = ReviewServer("127.0.0.1", 0).start()
    try:
        answering(server.base_url + "/")
        with httpx.Client(base_url=server.base_url) as client:
            assert client.get("/").status_code == 401, "loopback too: the setting guards every request"
            assert client.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401
            ok = client.get("/", headers={"Authorization": "Bearer tok-s3cret-value"})
            assert ok.status_code == 200 and "tok-s3cret-value" not in ok.text
            assert client.get("/", auth=("ana", "wrong")).status_code == 401
            ana = client.get("/", auth=("ana", "pw-ana-1"))
            assert ana.status_code == 200 and "signed in as <strong>ana</strong>" in ana.text
        with httpx.Client(base_url=server.base_url) as browser_like:  # the login form: name and token
            form = browser_like.get("/login").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
            assert (
                browser_like.post("/login", data={"name": "Bea", "token": "tok-s3cret-value"}).status_code
                == 403
            )
            wrong = browser_like.post("/login", data={"name": "Bea", "token": "nope", "csrf_token": csrf})
            assert wrong.status_code == 401
            signed = browser_like.post(
                "/login", data={"name": "Bea", "token": "tok-s3cret-value", "csrf_token": csrf}
            )
            assert signed.status_code == 303 and "tok-s3cret-value" not in str(signed.headers)
            page = browser_like.get("/")
            assert page.status_code == 200 and "signed in as <strong>Bea</strong>" in page.text
    finally:
        server.stop()


def get_from(client: tuple[str, int], path: str) -> httpx.Response:
    """A GET straight into the app as if from ``client`` (no server: the address is chosen)."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=build_app(), client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://review") as http:
            return await http.get(path)

    return asyncio.run(get())


def test_without_auth_only_loopback_clients_and_loopback_binds(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    for name in ("SYNC_PLATFORM_REVIEW_TOKEN", "SYNC_PLATFORM_REVIEW_USERS"):
        monkeypatch.delenv(name, raising=False)
    warehouse = Warehouse.from_env()
    DeadLetterQueue(warehouse).ensure()
    for i, (kind, error) in enumerate(
        [("outbound", "refused: INVALID_EMAIL"), ("rate_limit", "429 from the CRM")]
    ):
        warehouse.query(
            "INSERT INTO ops.dead_letters (id, crm, object, kind, attempts, error, created_at, record_id) "
            "VALUES (?, 'salesforce', 'Contact', ?, 1, ?, now(), ?)",
            (f"dl{i}", kind, error, f"chg-{i}"),
        )
    remote = get_from(("203.0.113.7", 50000), "/")
    assert remote.status_code == 403 and "local users only" in remote.text
    local = get_from(("127.0.0.1", 50000), "/")
    assert local.status_code == 200
    outbound, other = local.text.split('id="other-dl-h"')
    assert "Outbound dead letters (1)" in outbound and "INVALID_EMAIL" in outbound and "429" not in outbound
    assert "Other pending dead letters (1)" in other and "429 from the CRM" in other and "rate_limit" in other
    with pytest.raises(ValueError, match="not a loopback address"):
        ReviewServer("0.0.0.0", 0)
    monkeypatch.setenv("SYNC_PLATFORM_REVIEW_USERS", "ana-without-password")
    with pytest.raises(ValueError, match="every entry is user:password") as refused:
        ReviewServer("127.0.0.1", 0)
    assert "ana-without-password" not in str(refused.value)
    monkeypatch.setenv("SYNC_PLATFORM_REVIEW_USERS", "ana:pw-ana-1")
    monkeypatch.setenv("SYNC_PLATFORM_REVIEW_TOKEN", "tok-s3cret-value")
    assert "pw-ana-1" not in repr(load_settings()) and "tok-s3cret" not in repr(load_settings())
