"""The Dynamics source and listing with plain dlt into DuckDB, against the sandbox over HTTP (no Dagster)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sync_platform.ingest.sources.dynamics import dynamics_source
from sync_platform.ingest.sources.dynamics.listing import dynamics_listing
from sync_platform_tests.ingest.sources.conftest import listed


def test_dynamics_source_loads_every_contact_then_only_the_tracked_changes(duck, settings_of, admin):
    pipe = duck("dynamics")
    pipe.run(dynamics_source(objects=["contacts"], **settings_of("dynamics")))
    assert pipe.extracted("contacts") == 500
    assert pipe.rows("SELECT count(*), count(DISTINCT contactid) FROM contacts") == [(500, 500)]

    table = pipe.table("contacts")
    columns = table["columns"]
    assert table["write_disposition"] == "merge"
    assert columns["contactid"]["primary_key"] and not columns["contactid"]["nullable"]
    expected = {
        "modifiedon": "timestamp",
        "donotemail": "bool",
        "statecode": "bigint",
        "deleted_at": "timestamp",
    }
    assert pipe.declared_types("contacts", *expected) == expected
    assert pipe.warehouse_types("contacts")["modifiedon"] == "TIMESTAMP WITH TIME ZONE"
    first_token = pipe.resource_state("dynamics", "contacts")["delta_token"]

    ids = [row[0] for row in pipe.rows("SELECT contactid FROM contacts ORDER BY contactid LIMIT 4")]
    edited, deleted = ids[:3], ids[3]
    admin.update("dynamics", "contacts", edited, {"jobtitle": "Edited"})
    admin.delete("dynamics", "contacts", [deleted])
    pipe.run(dynamics_source(objects=["contacts"], **settings_of("dynamics")))

    assert pipe.extracted("contacts") == 4, "change tracking returns exactly the three edits and the deletion"
    assert pipe.resource_state("dynamics", "contacts")["delta_token"] != first_token
    assert pipe.rows("SELECT count(*), count(DISTINCT contactid) FROM contacts") == [(500, 500)]
    assert sorted(pipe.rows("SELECT contactid, jobtitle FROM contacts WHERE jobtitle = 'Edited'")) == [
        (i, "Edited") for i in edited
    ]
    assert pipe.rows("SELECT contactid FROM contacts WHERE deleted_at IS NOT NULL") == [(deleted,)]


@pytest.mark.parametrize("hard_delete", [False, True])
def test_a_deletion_stamps_the_row_and_keeps_its_last_values(duck, settings_of, admin, hard_delete):
    """Dataverse reports a delete with the id only: merged as it came, the tombstone nulled every
    other column of the raw row, where Salesforce and HubSpot deletes keep the last values."""
    pipe = duck("dynamics")
    source = dynamics_source(objects=["contacts"], hard_delete=hard_delete, **settings_of("dynamics"))
    pipe.run(source)
    values = (
        "SELECT contactid, lastname, emailaddress1, createdon, statecode FROM contacts WHERE contactid = ?"
    )
    [(gone,)] = pipe.rows("SELECT contactid FROM contacts ORDER BY contactid LIMIT 1")
    [last] = pipe.rows(values, gone)
    assert all(v is not None for v in last)
    admin.delete("dynamics", "contacts", [gone])

    pipe.run(dynamics_source(objects=["contacts"], hard_delete=hard_delete, **settings_of("dynamics")))

    if hard_delete:
        assert pipe.rows(values, gone) == []
    else:
        assert pipe.rows(values, gone) == [last]
        [(deleted_at, modifiedon)] = pipe.rows(
            "SELECT deleted_at, modifiedon FROM contacts WHERE contactid = ?", gone
        )
        assert deleted_at is not None and modifiedon == deleted_at, "stamped when the delete was learnt"
    assert pipe.rows("SELECT count(*) FROM contacts") == [(499 if hard_delete else 500,)]


def test_dynamics_listing_yields_the_id_and_cursor_of_every_contact(settings_of, admin):
    listing = dynamics_listing(fields={"contacts": ["jobtitle"]}, **settings_of("dynamics"))
    contacts = listed(listing, "contacts")
    assert contacts.column_names == ["contactid", "modifiedon", "jobtitle", "unreadable"]
    assert contacts.num_rows == 500 and len(set(contacts.column("contactid").to_pylist())) == 500
    assert contacts.column("modifiedon").null_count == 0
    assert pa.types.is_timestamp(contacts.schema.field("modifiedon").type)

    gone = contacts.column("contactid").to_pylist()[:2]
    admin.delete("dynamics", "contacts", gone)
    live = listed(dynamics_listing(fields={"contacts": []}, **settings_of("dynamics")), "contacts")
    assert live.num_rows == 498 and not set(gone) & set(live.column("contactid").to_pylist())


def test_a_retry_after_longer_than_the_policy_allows_fails_now_instead_of_holding_the_run(settings_of, admin):
    """One 429 asking for 15 minutes used to hold the request (and the warehouse's write slot) that
    long; past ``max_retry_after`` it fails at once as a rate-limit error, the next run resumes."""
    import pytest

    from sync_platform.core.errors import CrmRequestError
    from sync_platform.ingest.sources.common import SyncReport
    from sync_platform.ingest.sources.dynamics.helpers import http_client
    from sync_platform.ingest.sources.http import HttpPolicy

    settings = settings_of("dynamics")
    policy = HttpPolicy(max_retry_after=5.0)
    client = http_client(
        settings["token_url"],
        settings["client_id"],
        settings["client_secret"],
        settings["scope"],
        policy,
        SyncReport("dynamics"),
        None,
    )
    admin.inject("rate_limit", crm="dynamics", path="/api/data", count=1, delay=900)
    with pytest.raises(CrmRequestError) as failed:
        client.request("GET", f"{settings['api_url']}/contacts", params={"$top": "1"})
    assert failed.value.kind == "rate_limit" and failed.value.attempts == 1
