"""The HubSpot source and listing with plain dlt into DuckDB, against the sandbox over HTTP (no Dagster)."""

from __future__ import annotations

import pyarrow as pa

from sync_platform.ingest.sources.hubspot import hubspot_source
from sync_platform.ingest.sources.hubspot.listing import hubspot_listing
from sync_platform_tests.ingest.sources.conftest import listed


def test_hubspot_source_loads_every_contact_then_only_the_changes(duck, settings_of, admin):
    pipe = duck("hubspot")
    pipe.run(hubspot_source(objects=["contacts"], **settings_of("hubspot")))
    assert pipe.extracted("contacts") == 500
    assert pipe.rows("SELECT count(*), count(DISTINCT id) FROM contacts") == [(500, 500)]

    table = pipe.table("contacts")
    columns = table["columns"]
    assert table["write_disposition"] == "merge"
    assert columns["id"]["primary_key"] and not columns["id"]["nullable"]
    expected = {
        "lastmodifieddate": "timestamp",
        "archived": "bool",
        "jobtitle": "text",
        "deleted_at": "timestamp",
    }
    assert pipe.declared_types("contacts", *expected) == expected
    assert pipe.warehouse_types("contacts")["lastmodifieddate"] == "TIMESTAMP WITH TIME ZONE"
    cursor = pipe.resource_state("hubspot", "contacts")["incremental"]["lastmodifieddate"]
    assert cursor["last_value"] == pipe.rows("SELECT max(lastmodifieddate) FROM contacts")[0][0]

    ids = [row[0] for row in pipe.rows("SELECT id FROM contacts ORDER BY id LIMIT 4")]
    edited, deleted = ids[:3], ids[3]
    admin.update("hubspot", "contacts", edited, {"jobtitle": "Edited"})
    admin.delete("hubspot", "contacts", [deleted])
    pipe.run(hubspot_source(objects=["contacts"], **settings_of("hubspot")))

    # the four changes, and at most the newest unchanged row, which the look-back window re-reads
    assert 4 <= pipe.extracted("contacts") <= 5
    assert pipe.rows("SELECT count(*), count(DISTINCT id) FROM contacts") == [(500, 500)]
    assert sorted(pipe.rows("SELECT id, jobtitle FROM contacts WHERE jobtitle = 'Edited'")) == [
        (i, "Edited") for i in edited
    ]
    assert pipe.rows("SELECT id, archived FROM contacts WHERE deleted_at IS NOT NULL") == [(deleted, True)]


def test_hubspot_listing_yields_the_id_and_cursor_of_every_live_contact(settings_of, admin):
    listing = hubspot_listing(fields={"contacts": ["jobtitle"]}, **settings_of("hubspot"))
    contacts = listed(listing, "contacts")
    assert contacts.column_names == ["id", "lastmodifieddate", "jobtitle", "unreadable"]
    assert contacts.num_rows == 500 and len(set(contacts.column("id").to_pylist())) == 500
    assert contacts.column("lastmodifieddate").null_count == 0
    assert pa.types.is_timestamp(contacts.schema.field("lastmodifieddate").type)

    gone = contacts.column("id").to_pylist()[:2]
    admin.delete("hubspot", "contacts", gone)
    live = listed(hubspot_listing(fields={"contacts": []}, **settings_of("hubspot")), "contacts")
    assert live.num_rows == 498 and not set(gone) & set(live.column("id").to_pylist())


def _search(settings: dict, start):
    from sync_platform.ingest.sources.common import SyncReport
    from sync_platform.ingest.sources.hubspot.helpers import _search_since, http_clients

    base = settings["host"].rstrip("/")
    clients = http_clients(
        base, settings["access_token"], None, None, None, None, 5, None, SyncReport("hubspot"), None
    )
    return _search_since(clients.search, base, "contacts", "lastmodifieddate", ["jobtitle"], start)


def test_search_never_skips_a_record_when_another_is_edited_between_pages(settings_of, admin):
    """Offset paging skipped the record at the next page boundary whenever one already read was
    edited (it moves to the end, the rest shift up): 500 contacts, one edit, 499 ids landed."""
    from sync_platform.ingest.sources.common import EPOCH

    pages = _search(settings_of("hubspot"), EPOCH)
    first = next(pages)
    admin.update("hubspot", "contacts", [first[0]["id"]], {"jobtitle": "edited mid-sync"})
    created = admin.create("hubspot", "contacts", [{"lastname": "New", "email": "new.mid.sync@example.com"}])
    admin.delete("hubspot", "contacts", [first[1]["id"]])
    rest = [row for page in pages for row in page]

    ids = [row["id"] for row in first + rest]
    assert len(set(ids)) == 501, "every live contact, the edited one, and the one created mid-sync"
    assert len(ids) - len(set(ids)) <= 1, "only the edited record may be read twice"
    assert {str(i) for i in created} <= set(ids)
    assert [r["jobtitle"] for r in rest if r["id"] == first[0]["id"]] == ["edited mid-sync"]


def test_an_incremental_sync_lands_every_change_made_between_its_pages(duck, settings_of, admin):
    """The keyset case of an incremental run: with a saved cursor and its look-back window, edits,
    creates and archives landing between search pages are all loaded, none skipped."""
    pipe = duck("hubspot")
    pipe.run(hubspot_source(objects=["contacts"], **settings_of("hubspot")))
    assert pipe.resource_state("hubspot", "contacts")["incremental"]["lastmodifieddate"]["last_value"]
    touched = admin.touch("hubspot", "contacts", 450, field="jobtitle", value="touched")["ids"]
    untouched = sorted({r[0] for r in pipe.rows("SELECT id FROM contacts")} - set(touched))
    mid_sync: dict[str, list[str]] = {}

    def between_pages(page: pa.Table) -> pa.Table:
        """After the first page: the CRM changes while the run reads the rest."""
        if not mid_sync:
            read = page.column("id").to_pylist()
            mid_sync["edited"] = [read[0], untouched[0]]  # one already read, one not yet changed
            admin.update("hubspot", "contacts", mid_sync["edited"], {"jobtitle": "edited mid-sync"})
            mid_sync["created"] = [str(i) for i in admin.create("hubspot", "contacts", [{"lastname": "New"}])]
            mid_sync["archived"] = [read[1], untouched[1]]
            admin.delete("hubspot", "contacts", mid_sync["archived"])
        mid_sync.setdefault("pages", []).append(str(page.num_rows))
        return page

    source = hubspot_source(objects=["contacts"], **settings_of("hubspot"))
    source.resources["contacts"].add_map(between_pages)
    pipe.run(source)

    assert len(mid_sync["pages"]) >= 3, "the changes span several search pages"
    titles = dict(pipe.rows("SELECT id, jobtitle FROM contacts WHERE deleted_at IS NULL"))
    assert len(titles) == 499 and set(mid_sync["created"]) <= set(titles)
    live_touched = set(touched) - set(mid_sync["archived"]) - set(mid_sync["edited"])
    assert {titles[i] for i in live_touched} == {"touched"}, "no touched record skipped"
    assert [titles[i] for i in mid_sync["edited"]] == ["edited mid-sync"] * 2
    archived = pipe.rows("SELECT id FROM contacts WHERE deleted_at IS NOT NULL AND archived ORDER BY id")
    assert [r[0] for r in archived] == sorted(mid_sync["archived"])


class _Answer:
    def __init__(self, body: dict) -> None:
        self.body = body

    def json(self) -> dict:
        return self.body


class _Portal:
    """A client whose batch/read answers with a given body (a 207's per-id errors)."""

    def __init__(self, body: dict) -> None:
        self.body = body

    def request(self, method: str, url: str, **kwargs) -> _Answer:
        return _Answer(self.body)


def _batch(body: dict, ids: list[str]):
    from sync_platform.ingest.sources.hubspot.helpers import batch_read

    return batch_read(_Portal(body), "http://portal", "contacts", "lastmodifieddate", ["email"], ids, False)


def test_batch_read_takes_only_object_not_found_for_a_missing_record():
    """Any per-id error used to count as "not found", so remediation soft-deleted live records."""
    import pytest

    from sync_platform.core.errors import CrmRequestError

    found = {"id": "1", "properties": {"lastmodifieddate": "2026-01-01T00:00:00Z", "email": "a@b.co"}}
    gone = {"category": "OBJECT_NOT_FOUND", "context": {"ids": ["2"]}}
    rows, not_found = _batch({"results": [found], "errors": [gone]}, ["1", "2"])
    assert [r["id"] for r in rows] == ["1"] and not_found == ["2"]

    refused = {"category": "RATE_LIMITS", "context": {"ids": ["2"]}}
    with pytest.raises(CrmRequestError, match="refused 1 id"):
        _batch({"results": [found], "errors": [refused]}, ["1", "2"])
    with pytest.raises(CrmRequestError, match="neither a record nor not-found"):
        _batch({"results": [found]}, ["1", "2"])
