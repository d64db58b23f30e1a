"""Prior versions of raw records: kept per load, one query for "before time T", shown masked by the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from sync_platform.cli import app
from sync_platform.ingest.history import RawHistory
from sync_platform.security.encryption import field_cipher


def first_contact(harness) -> tuple[str, str]:
    return harness.rows("SELECT id, email FROM raw_salesforce.contacts WHERE deleted_at IS NULL ORDER BY id")[
        0
    ]


def test_each_change_is_a_version_and_the_values_before_a_time_are_one_query(harness) -> None:
    harness.run("salesforce")
    contact, email = first_contact(harness)
    history = RawHistory(harness.warehouse)
    assert history.versions("salesforce", "contacts", contact).height == 1
    between = datetime.now(UTC)

    harness.admin.update(
        "salesforce", "Contact", [contact], {"Title": "Countess", "Email": "ada@new.example"}
    )
    _, meta = harness.run("salesforce")
    assert meta["contacts"]["history_versions"] == 1
    _, meta = harness.run("salesforce")  # the look-back re-reads the edit: the same version, not kept twice
    assert meta["contacts"]["rows_reread_in_look_back"] >= 1 and meta["contacts"]["history_versions"] == 0

    versions = history.versions("salesforce", "contacts", contact)
    assert versions["title"].to_list()[-1] == "Countess" and versions.height == 2
    before = history.as_of("salesforce", "contacts", between, [contact])
    assert before.height == 1 and before["email"][0] == email and before["title"][0] != "Countess"
    everyone = history.as_of("salesforce", "contacts", between)
    assert everyone.height == harness.rows("SELECT count(*) FROM raw_salesforce.contacts")[0][0]

    shown = CliRunner().invoke(app, ["history", "salesforce", contact])
    assert shown.exit_code == 0, shown.output
    assert "2 version(s)" in shown.output and "title: " in shown.output and "Countess" in shown.output
    assert email not in shown.output and "ada@new.example" not in shown.output, "personal values masked"
    keyless = CliRunner().invoke(app, ["history", "salesforce", contact, "--decrypt"])
    assert keyless.exit_code == 1 and "no field-encryption key" in keyless.output
    field_cipher(create_if_missing=True)
    clear = CliRunner().invoke(app, ["history", "salesforce", contact, "--decrypt"])
    assert clear.exit_code == 0 and "ada@new.example" in clear.output
    unknown = CliRunner().invoke(app, ["history", "salesforce", "003nope"])
    assert unknown.exit_code == 1 and "no kept version" in unknown.output

    purged = history.purge("salesforce", days=1, now=datetime.now(UTC) + timedelta(days=2))
    assert purged == 1, "the superseded version went; every record's newest version stays"
    assert history.versions("salesforce", "contacts", contact)["title"].to_list() == ["Countess"]


def test_a_run_whose_history_copy_failed_is_caught_up_by_the_next(harness, monkeypatch) -> None:
    harness.run("salesforce")
    contact, _ = first_contact(harness)
    harness.admin.update("salesforce", "Contact", [contact], {"Title": "Missed once"})
    original = RawHistory.record

    def broken(self, crm, tables=None):
        raise OSError("disk full")

    monkeypatch.setattr(RawHistory, "record", broken)
    result, meta = harness.run("salesforce")
    assert result.success and meta["contacts"]["history_versions"] is None, "the load stands, the gap is told"
    monkeypatch.setattr(RawHistory, "record", original)
    _, meta = harness.run("salesforce")
    titles = RawHistory(harness.warehouse).versions("salesforce", "contacts", contact)["title"].to_list()
    assert titles[-1] == "Missed once" and len(titles) == 2


@pytest.mark.parametrize("crm", ["hubspot", "dynamics"])
def test_every_crm_keeps_versions_by_its_own_record_id(harness, crm: str) -> None:
    harness.run(crm)
    key = "contactid" if crm == "dynamics" else "id"
    (record,) = harness.rows(f"SELECT {key} FROM raw_{crm}.contacts ORDER BY {key} LIMIT 1")[0]
    obj = {"hubspot": "contacts", "dynamics": "contacts"}[crm]
    field = {"hubspot": "jobtitle", "dynamics": "jobtitle"}[crm]
    harness.admin.update(crm, obj, [str(record)], {field: "Countess"})
    harness.run(crm)
    versions = RawHistory(harness.warehouse).versions(crm, "contacts", str(record))
    assert versions.height == 2 and versions[field].to_list()[-1] == "Countess"
