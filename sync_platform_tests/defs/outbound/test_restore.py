"""`sync-platform restore`: a bad import inside a CRM undone from the raw history, through the CLI."""

from __future__ import annotations

from datetime import UTC, datetime

from typer.testing import CliRunner

from sync_platform.cli import app


def test_a_bad_import_in_the_crm_is_shown_then_undone_exactly(harness) -> None:
    harness.run("salesforce")
    ids = [r[0] for r in harness.rows("SELECT id FROM raw_salesforce.contacts ORDER BY id LIMIT 40")]
    marks = ", ".join("?" * len(ids))
    columns = "id, title, first_name, last_name, email, phone, customer_status__c"
    before_import = harness.rows(
        f"SELECT {columns} FROM raw_salesforce.contacts WHERE id IN ({marks}) ORDER BY id", tuple(ids)
    )
    cutoff = datetime.now(UTC)
    harness.admin.update(
        "salesforce", "Contact", ids, {"Title": "ZZ Imported", "Customer_Status__c": "Former"}
    )
    harness.run("salesforce")
    assert harness.rows(
        f"SELECT DISTINCT title FROM raw_salesforce.contacts WHERE id IN ({marks})", tuple(ids)
    ) == [("ZZ Imported",)]

    runner = CliRunner()
    args = ["restore", "--crm", "salesforce", "--object", "contacts", "--before", cutoff.isoformat()]
    dry = runner.invoke(app, args)
    assert dry.exit_code == 0, dry.output
    assert "40 record(s) differ" in dry.output and "dry run: nothing written" in dry.output
    assert "'ZZ Imported' -> " in dry.output
    assert harness.admin.get("salesforce", "Contact", ids[0])["Title"] == "ZZ Imported", (
        "a dry run writes nothing"
    )

    done = runner.invoke(app, [*args, "--yes"])
    assert done.exit_code == 0, done.output
    assert "restored 40 record(s) in salesforce; 0 refused" in done.output
    harness.run("salesforce")
    after = harness.rows(
        f"SELECT {columns} FROM raw_salesforce.contacts WHERE id IN ({marks}) ORDER BY id", tuple(ids)
    )
    assert after == before_import, "the exact values from before the import are back"
    (audit,) = harness.rows("SELECT updated, changed_fields FROM ops.audit_log WHERE step = 'crm_restore'")
    assert audit[0] == 40 and "Title" in audit[1]
    again = runner.invoke(app, args)
    assert "0 record(s) differ" in again.output, "restoring twice has nothing left to do"


def test_mapping_check_refuses_a_written_back_field_the_crm_cannot_write(
    harness, tmp_path, monkeypatch
) -> None:
    """`title` read from Salesforce's LastModifiedDate reads fine, but write-back would set it:
    the live metadata says the field is read-only, and the check says so before anything runs."""
    import shutil

    from sync_platform.core.settings import PROJECT_ROOT

    runner = CliRunner()
    ok = runner.invoke(app, ["mapping", "check", "--live"])
    assert ok.exit_code == 0, ok.output
    edited = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "data" / "mappings", edited)
    path = edited / "salesforce.yaml"
    path.write_text(
        path.read_text().replace(
            "title: {source: title, normalize: name}", "title: {source: last_modified_date}"
        )
    )
    monkeypatch.setenv("SYNC_PLATFORM_MAPPINGS_DIR", str(edited))
    bad = runner.invoke(app, ["mapping", "check", "--live"])
    assert bad.exit_code == 1, bad.output
    assert (
        "entities.contact.fields.title.source: salesforce Contact field 'LastModifiedDate' is read-only"
        in bad.output
    )


def test_restore_shows_values_in_clear_only_with_the_key(harness, monkeypatch) -> None:
    """--decrypt on a restore's diff is refused without the field key, as `history --decrypt` is."""
    harness.run("salesforce")
    monkeypatch.setenv("SYNC_PLATFORM_WAREHOUSE", "postgres")  # not the embedded default: no local key file
    monkeypatch.delenv("SYNC_PLATFORM_FIELD_KEYS", raising=False)
    refused = CliRunner().invoke(
        app,
        [
            "restore",
            "--crm",
            "salesforce",
            "--object",
            "contacts",
            "--before",
            datetime.now(UTC).isoformat(),
            "--decrypt",
        ],
    )
    assert refused.exit_code == 1 and "cannot show values in clear" in refused.output
