"""Reconciliation, remediation, the activity probe and the zero-change sensor, end to end.

Everything runs through Dagster against the sandbox over HTTP: drift is seeded with the
sandbox's admin API the way it happens in production (a record created with an old stamp, a
delete or an edit that does not move the cursor, a late commit older than the look-back).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sync_platform.core.config import DEFAULT_PATH
from sync_platform.core.warehouse import Warehouse
from sync_platform.defs.reconcile.probe import FINDING, zero_change_alerts
from sync_platform.ops.alerts import AlertBook

CONTACTS = "reconcile/salesforce/contacts"


@pytest.fixture
def sync_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a sync.yaml with overrides and point the platform at it."""

    def write(**reconcile: object) -> None:
        data = yaml.safe_load(DEFAULT_PATH.read_text())
        data["reconcile"].update(reconcile)
        path = tmp_path / "sync.yaml"
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv("SYNC_PLATFORM_CONFIG", str(path))

    return write


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _seed_drift(harness, per_class: dict[str, int], offset: int) -> dict[str, list[str]]:
    """Seed each drift class on Salesforce contacts; ``offset`` keeps rounds on different records."""
    admin = harness.admin
    # the sandbox's generated history ends on 2025-12-31: anything stamped well before that is older
    # than the saved cursor minus the look-back window, so the incremental sync cannot see it
    old = "2025-06-01T00:00:00.000Z"
    ids = harness.rows("SELECT id FROM raw_salesforce.contacts WHERE deleted_at IS NULL ORDER BY id")
    pool = [r[0] for r in ids][offset:]
    seeded: dict[str, list[str]] = {
        "missing": admin.create(
            "salesforce",
            "Contact",
            [{"LastName": f"Late{n}"} for n in range(per_class["missing"])],
            stamp=old,
        )
    }
    take = iter(pool)
    seeded["extra"] = [next(take) for _ in range(per_class["extra"])]
    admin.delete("salesforce", "Contact", seeded["extra"], mode="frozen")
    seeded["diverged"] = [next(take) for _ in range(per_class["diverged"])]
    admin.update("salesforce", "Contact", seeded["diverged"], {"Title": "Edited by a script"}, mode="frozen")
    stale = []
    while len(stale) < per_class["stale"]:
        record_id = next(take)
        stamp = datetime.fromisoformat(
            admin.get("salesforce", "Contact", record_id)["SystemModstamp"].replace("Z", "+00:00")
        )
        if stamp < datetime(2025, 12, 1, tzinfo=UTC):  # a late commit, older than the look-back window
            admin.update(
                "salesforce",
                "Contact",
                [record_id],
                {"Title": "Late commit"},
                stamp=_iso(stamp + timedelta(days=1)),
            )
            stale.append(record_id)
    seeded["stale"] = stale
    return seeded


def test_seeded_drift_warns_below_and_fails_above_the_threshold_and_is_repaired(harness_factory, sync_config):
    sync_config(auto_remediate=True, probe_sample=0)
    harness = harness_factory(contacts=2000)
    harness.run("salesforce")
    result, meta = harness.run_assets(CONTACTS)
    assert (
        meta[CONTACTS]["missing"]
        + meta[CONTACTS]["extra"]
        + meta[CONTACTS]["stale"]
        + meta[CONTACTS]["diverged"]
        == 0
    )
    assert harness.checks(result)[f"{CONTACTS}:drift_threshold"].passed

    for offset, per_class, severity in (
        (0, {"missing": 2, "extra": 1, "stale": 1, "diverged": 2}, dg.AssetCheckSeverity.WARN),
        (100, {"missing": 4, "extra": 4, "stale": 4, "diverged": 4}, dg.AssetCheckSeverity.ERROR),
    ):
        seeded = _seed_drift(harness, per_class, offset)
        _, synced = harness.run("salesforce")  # the cursor cannot see any of it
        assert synced["contacts"]["rows_inserted"] == 0 and synced["contacts"]["rows_updated"] == 0

        result, meta = harness.run_assets(CONTACTS)
        found = meta[CONTACTS]
        assert {c: found[c] for c in per_class} == per_class
        check = harness.checks(result)[f"{CONTACTS}:drift_threshold"]
        assert not check.passed and check.severity == severity
        differing = set(harness.rows("SELECT id FROM reconcile.differences WHERE object = 'contacts'"))
        assert {r[0] for r in differing} == {i for ids in seeded.values() for i in ids}

        result, meta = harness.run_assets("remediate/salesforce")
        assert meta["remediate/salesforce"]["remaining_drift"]["contacts"] == 0
        assert harness.checks(result)["remediate/salesforce:drift_after_remediation"].passed
        titles = dict(
            harness.rows(
                "SELECT id, title FROM raw_salesforce.contacts WHERE id IN ({})".format(
                    ", ".join("?" for _ in seeded["diverged"])
                ),
                tuple(seeded["diverged"]),
            )
        )
        assert set(titles.values()) == {"Edited by a script"}
        gone = harness.rows(
            "SELECT count(*) FROM raw_salesforce.contacts WHERE deleted_at IS NOT NULL AND id IN ({})".format(
                ", ".join("?" for _ in seeded["extra"])
            ),
            tuple(seeded["extra"]),
        )
        assert gone[0][0] == len(seeded["extra"])

    audit = Warehouse.from_env().query(
        "SELECT step, count(*) FROM ops.audit_log WHERE crm = 'salesforce' "
        "AND step IN ('reconcile', 'remediate') GROUP BY step ORDER BY step"
    )
    assert dict(audit)["remediate"] >= 2


def _sensor(harness) -> None:
    from sync_platform.definitions import defs

    zero_change_alerts(
        dg.build_sensor_context(instance=harness.instance, definitions=defs(), resources=harness.resources)
    )


def _open(finding: str) -> list:
    return [a for a in AlertBook(Warehouse.from_env(), sinks=[]).open_alerts() if a.finding == finding]


def test_the_frozen_cursor_incident_is_found_alerted_repaired_and_resolved(harness_factory, sync_config):
    """An admin script edits 1 % of contacts without moving any timestamp: syncs keep 'succeeding' with 0."""
    sync_config(auto_remediate=True, probe_sample=1000, zero_change_runs=2)
    harness = harness_factory(contacts=1000)
    harness.run("salesforce")
    edited = harness.admin.touch("salesforce", "Contact", count=10, stride=97, mode="frozen")["ids"]

    for _ in range(2):
        _, meta = harness.run("salesforce")
        assert meta["contacts"]["rows_updated"] == 0 and meta["contacts"]["rows_inserted"] == 0
        assert meta["salesforce"]["differing"]["contacts"] == 10  # the probe after every sync
    _sensor(harness)
    [alert] = _open(FINDING)
    assert alert.crm == "salesforce" and "frozen" in alert.message

    result, meta = harness.run_assets(CONTACTS, "remediate/salesforce", "reconcile/report")
    assert (
        meta[CONTACTS]["diverged"] == 10
        and meta[CONTACTS]["anomalies"]["content_changed_cursor_unchanged"] == 10
    )
    report = meta["reconcile/report"]
    assert (
        report["differing"] == 0 and report["status"] == "ok"
    )  # the report shows the state after the repair
    html = Path(report["html"]).read_text()
    assert "data:image/png;base64," in html and "salesforce/contacts" in html
    cycle = harness.rows(
        "SELECT diverged, status FROM reconcile.drift_history WHERE crm = 'salesforce' AND "
        "entity = 'contacts' ORDER BY checked_at"
    )
    assert cycle[0][0] == 10 and cycle[-1][0] == 0  # found, then repaired
    assert harness.checks(result)["remediate/salesforce:drift_after_remediation"].passed
    resolved = Warehouse.from_env().query(
        "SELECT finding, resolved_at IS NOT NULL FROM ops.alerts "
        "WHERE key LIKE 'reconcile:salesforce:contacts:%'"
    )
    assert ("content_changed_cursor_unchanged", True) in resolved
    repaired = harness.rows(
        "SELECT count(*) FROM raw_salesforce.contacts WHERE id IN ({})".format(", ".join("?" for _ in edited))
        + " AND title LIKE 'edited%'",
        tuple(edited),
    )
    assert repaired[0][0] == 10

    _, meta = harness.run("salesforce")  # the probe is clean again, so the zero-change alert clears
    assert meta["salesforce"]["differing"]["contacts"] == 0
    _sensor(harness)
    assert _open(FINDING) == []


def test_an_idle_crm_never_raises_the_zero_change_alert(harness_factory, sync_config):
    sync_config(probe_sample=100, zero_change_runs=2)
    harness = harness_factory(contacts=300)
    for _ in range(3):
        _, meta = harness.run("salesforce")
        assert meta["salesforce"]["differing_total"] == 0
    _, meta = harness.run("salesforce")
    assert meta["contacts"]["rows_updated"] == 0
    _sensor(harness)
    assert _open(FINDING) == []


def test_reconcile_and_repair_on_postgres_inside_the_warehouse(
    harness_factory, sync_config, postgres_db, monkeypatch
):
    """The production path: listing, comparison as SQL in PostgreSQL, and repair, on the real server."""
    sync_config(probe_sample=50, engine="sql")
    harness = harness_factory(contacts=300)
    monkeypatch.setenv("SYNC_PLATFORM_WAREHOUSE", "postgres")
    monkeypatch.setenv("SYNC_PLATFORM_POSTGRES_DSN", postgres_db)
    harness.run("salesforce")
    edited = harness.admin.touch("salesforce", "Contact", count=3, stride=50, mode="frozen")["ids"]
    _, meta = harness.run_assets(CONTACTS)
    assert (meta[CONTACTS]["diverged"], meta[CONTACTS]["source_records"]) == (3, 300)
    assert sorted(meta[CONTACTS]["sample_ids"]["diverged"]) == sorted(edited)
    _, meta = harness.run_assets("remediate/salesforce")
    assert meta["remediate/salesforce"]["remaining_drift"] == {"contacts": 0}
    assert Warehouse.from_env().kind == "postgres"


def test_the_sql_engine_finds_what_the_polars_engine_finds(harness_factory, sync_config):
    harness = harness_factory(contacts=300)
    harness.run("salesforce")
    harness.admin.touch("salesforce", "Contact", count=3, stride=50, mode="frozen")
    harness.admin.delete(
        "salesforce",
        "Contact",
        [harness.rows("SELECT max(id) FROM raw_salesforce.contacts")[0][0]],
        mode="frozen",
    )
    found = {}
    for engine in ("polars", "sql"):
        sync_config(engine=engine)
        _, meta = harness.run_assets(CONTACTS)
        found[engine] = {
            k: meta[CONTACTS][k] for k in ("missing", "extra", "stale", "diverged", "sample_ids")
        }
    assert found["sql"] == found["polars"] and found["sql"]["diverged"] == 3 and found["sql"]["extra"] == 1


def test_a_listing_after_a_failed_load_is_the_fresh_listing(harness):
    """Reconciliation used to compare against the previous cycle's listing when a listing load
    had failed: the next listing must be the CRM as it is now."""
    from sync_platform.reconcile.cycle import list_source, listing_dataset, targets
    from sync_platform_tests.core.test_pending_packages import leave_pending_package

    cfg = harness.config("salesforce")
    wanted = [t for t in targets("salesforce") if t.table == "contacts"]
    list_source("salesforce", cfg, wanted, harness.warehouse)
    pipeline = harness.warehouse.pipeline("reconcile_salesforce", listing_dataset("salesforce"))
    leave_pending_package(pipeline, "contacts", [{"id": "003FAILEDLOAD0001AA"}])
    [(gone,)] = harness.rows("SELECT id FROM reconcile_salesforce.contacts ORDER BY id LIMIT 1")
    harness.admin.delete("salesforce", "Contact", [gone])

    list_source("salesforce", cfg, wanted, harness.warehouse)

    listed = {r[0] for r in harness.rows("SELECT id FROM reconcile_salesforce.contacts")}
    assert gone not in listed and "003FAILEDLOAD0001AA" not in listed and len(listed) == 499


def test_a_crm_hiccup_during_the_probe_never_fails_the_sync_that_landed(harness):
    """dlt wraps the CRM's error, so the probe's handler never fired and the whole sync failed."""
    harness.run("hubspot")
    harness.admin.inject("error", crm="hubspot", path="/batch/read", status=400, count=100)

    result, meta = harness.run_job("hubspot_sync")

    assert result.success
    probe = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey(["probe", "hubspot"])
    )
    assert probe["status"].value == "failed" and probe["error_kind"].value == "client_error"
    assert meta["contacts"]["rows_total"] == 500


# per CRM: the path its reconciliation listing reads, the cursor field it always lists, the raw key
LISTING = {
    "salesforce": ("/query", "SystemModstamp", "id"),
    "hubspot": ("/objects/contacts", "lastmodifieddate", "id"),
    "dynamics": ("/contacts", "modifiedon", "contactid"),
}


@pytest.mark.parametrize(("crm", "engine"), [*((crm, "polars") for crm in LISTING), ("salesforce", "sql")])
def test_an_unreadable_listed_record_is_reported_and_its_row_left_alone(harness, sync_config, crm, engine):
    """One unconvertible value in the listing failed the CRM's whole reconciliation; set aside
    silently, the record would look gone from the CRM and remediation would delete its row."""
    sync_config(auto_remediate=True, probe_sample=0, engine=engine)
    path, cursor, key = LISTING[crm]
    harness.run(crm)
    harness.admin.inject("corrupt_records", crm=crm, path=path, field=cursor, count=1)

    asset = f"reconcile/{crm}/contacts"
    result, meta = harness.run_assets(asset, f"remediate/{crm}", "reconcile/report")

    assert result.success
    found = meta[asset]
    assert found["unreadable"] == 1 and found["source_records"] == 499
    assert {c: found[c] for c in ("missing", "extra", "stale", "diverged")} == dict.fromkeys(
        ("missing", "extra", "stale", "diverged"), 0
    )
    [unreadable] = found["unreadable_ids"]
    assert f"`{unreadable}`" in meta["reconcile/report"]["report"]
    assert harness.rows(f"SELECT deleted_at FROM raw_{crm}.contacts WHERE {key} = ?", (unreadable,)) == [
        (None,)
    ], "not compared, so not deleted"
    assert harness.rows(f"SELECT count(*) FROM raw_{crm}.contacts WHERE deleted_at IS NULL") == [(500,)]
