"""The Salesforce source and listing with plain dlt into DuckDB, against the sandbox over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from sync_platform.ingest.sources.salesforce import salesforce_source
from sync_platform.ingest.sources.salesforce.helpers import (
    by_id_soql,
    incremental_soql,
    listing_soql,
    soql_datetime,
    soql_id,
    soql_string,
)
from sync_platform.ingest.sources.salesforce.listing import salesforce_listing
from sync_platform_tests.ingest.sources.conftest import listed


def test_salesforce_source_loads_every_contact_then_only_the_changes(duck, settings_of, admin):
    pipe = duck("salesforce")
    pipe.run(salesforce_source(objects=["contacts"], **settings_of("salesforce")))
    assert pipe.extracted("contacts") == 500
    assert pipe.rows("SELECT count(*), count(DISTINCT id) FROM contacts") == [(500, 500)]

    table = pipe.table("contacts")
    columns = table["columns"]
    assert table["write_disposition"] == "merge"
    assert columns["id"]["primary_key"] and not columns["id"]["nullable"]
    expected = {
        "system_modstamp": "timestamp",
        "is_deleted": "bool",
        "title": "text",
        "deleted_at": "timestamp",
    }
    assert pipe.declared_types("contacts", *expected) == expected
    assert pipe.warehouse_types("contacts")["system_modstamp"] == "TIMESTAMP WITH TIME ZONE"
    cursor = pipe.resource_state("salesforce", "contacts")["incremental"]["SystemModstamp"]
    assert cursor["last_value"] == pipe.rows("SELECT max(system_modstamp) FROM contacts")[0][0]

    ids = [row[0] for row in pipe.rows("SELECT id FROM contacts ORDER BY id LIMIT 4")]
    edited, deleted = ids[:3], ids[3]
    admin.update("salesforce", "Contact", edited, {"Title": "Edited"})
    admin.delete("salesforce", "Contact", [deleted])
    pipe.run(salesforce_source(objects=["contacts"], **settings_of("salesforce")))

    # the four changes, and at most the newest unchanged row, which the look-back window re-reads
    assert 4 <= pipe.extracted("contacts") <= 5
    assert pipe.rows("SELECT count(*), count(DISTINCT id) FROM contacts") == [(500, 500)]
    assert sorted(pipe.rows("SELECT id, title FROM contacts WHERE title = 'Edited'")) == [
        (i, "Edited") for i in edited
    ]
    assert pipe.rows("SELECT id, is_deleted FROM contacts WHERE deleted_at IS NOT NULL") == [(deleted, True)]


def test_salesforce_listing_yields_the_id_and_cursor_of_every_live_contact(settings_of, admin):
    listing = salesforce_listing(fields={"contacts": ["Title"]}, **settings_of("salesforce"))
    contacts = listed(listing, "contacts")
    assert contacts.column_names == ["Id", "SystemModstamp", "Title", "unreadable"]
    assert contacts.num_rows == 500 and len(set(contacts.column("Id").to_pylist())) == 500
    assert (
        contacts.column("SystemModstamp").null_count == 0 and contacts.column("unreadable").null_count == 500
    )
    assert pa.types.is_timestamp(contacts.schema.field("SystemModstamp").type)

    gone = contacts.column("Id").to_pylist()[:2]
    admin.delete("salesforce", "Contact", gone)
    live = listed(salesforce_listing(fields={"contacts": []}, **settings_of("salesforce")), "contacts")
    assert live.num_rows == 498 and not set(gone) & set(live.column("Id").to_pylist())


def test_soql_literals_are_escaped_and_ids_must_have_the_record_id_shape():
    assert soql_string("O'Brien \\ co") == "'O\\'Brien \\\\ co'"
    assert soql_id("003000000000001") == "'003000000000001'"
    assert soql_id("003000000000001AAA") == "'003000000000001AAA'"
    for bad in ("003' OR Id != '", "003000000000001\n", "0030000000000011", ""):
        with pytest.raises(ValueError, match="not a Salesforce record id"):
            soql_id(bad)
    one_hour_east = timezone(timedelta(hours=1))
    stamp = datetime(2024, 1, 1, 1, 0, 0, 123456, tzinfo=one_hour_east)
    assert soql_datetime(stamp) == "2024-01-01T00:00:00.123Z"
    with pytest.raises(TypeError):
        soql_datetime("2024-01-01T00:00:00Z")  # type: ignore[arg-type]


def test_soql_is_built_only_from_names_declared_in_the_settings():
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert incremental_soql("Contact", ["Id", "LastName"], start) == (
        "SELECT Id, LastName FROM Contact WHERE SystemModstamp >= 2024-01-01T00:00:00.000Z "
        "ORDER BY SystemModstamp, Id"
    )
    assert by_id_soql("Account", ["Id"], ["001000000000001", "001000000000002AAA"]) == (
        "SELECT Id FROM Account WHERE Id IN ('001000000000001', '001000000000002AAA')"
    )
    assert listing_soql("Case", ["Id", "Status"]) == "SELECT Id, Status FROM Case"
    undeclared = (("User", ["Id"]), ("Contact", ["Id", "Password__c"]), ("Contact", ["Id FROM User"]))
    for sobject, fields in undeclared:
        with pytest.raises(ValueError, match="declared in settings"):
            listing_soql(sobject, fields)
