"""The main job end to end on the embedded default: ``sync-platform demo``.

Starts the CRM sandbox, runs a full sync of all three CRMs through Dagster into DuckDB, makes
changes and deletions in the sandbox as users and automations would, runs the incremental
sync, and prints what each run picked up next to what was changed, so exactness is visible.
Then the incident (a script editing records without moving their stamps) is caught, repaired in
the warehouse and undone in the CRM itself from the raw history, and one outbound change is
written to every CRM that holds the customer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sync_platform.core.settings import DATA_DIR_ENV, SANDBOX_URL_ENV, WAREHOUSE_ENV, load_settings
from sync_platform.sandbox import SandboxConfig, SandboxServer
from sync_platform.sandbox.client import SandboxAdminClient
from sync_platform.sandbox.schema import ROLES

# the objects the demo edits, and how many of each change it makes per CRM
CHANGES = {"updated_by_users": 40, "updated_by_automation": 15, "deleted": 8, "created": 12}
STEPS = 8
FROZEN_SHARE = 0.01  # the incident: an admin script edits 1 % of Salesforce contacts, no timestamp moves
CREATE_FIELDS = {
    "salesforce": lambda n: {"LastName": f"Demo{n}", "Email": f"demo{n}@example.com"},
    "hubspot": lambda n: {"lastname": f"Demo{n}", "email": f"demo{n}@example.com"},
    "dynamics": lambda n: {"lastname": f"Demo{n}", "emailaddress1": f"demo{n}@example.com"},
}


@dataclass
class RunSummary:
    seconds: float
    rows: dict[tuple[str, str], dict] = field(default_factory=dict)


def _run_job(job_name: str, raise_on_error: bool = True) -> RunSummary:
    from sync_platform.cli.jobs import run_job

    started = time.monotonic()
    result = run_job(job_name, raise_on_error=raise_on_error, log_file=_log_file())
    summary = RunSummary(time.monotonic() - started)
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        crm, obj = mat.asset_key.path[-2], mat.asset_key.path[-1]  # (crm, object) or ("canonical", entity)
        summary.rows[(crm, obj)] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return summary


def _make_changes(admin: SandboxAdminClient, contacts: int) -> dict[str, dict[str, int]]:
    """The same edits in every CRM's contacts: user and automation updates, deletes, creates."""
    made = {}
    for crm in ("salesforce", "hubspot", "dynamics"):
        obj = ROLES[crm]["contact"]
        third = contacts // 3
        admin.touch(crm, obj, CHANGES["updated_by_users"], mode="user", start=0, stride=max(1, third // 40))
        admin.touch(crm, obj, CHANGES["updated_by_automation"], mode="automation", start=third, stride=7)
        victims = [_id_of(crm, obj, 2 * third + 11 * n) for n in range(CHANGES["deleted"])]
        admin.delete(crm, obj, victims)
        maker: Callable[[int], dict] = CREATE_FIELDS[crm]
        admin.create(crm, obj, [maker(n) for n in range(CHANGES["created"])])
        made[crm] = dict(CHANGES)
    return made


def _id_of(crm: str, obj: str, index: int) -> str:
    from sync_platform.sandbox.schema import OBJECTS

    return OBJECTS[crm][obj].format_id(index)


def run_demo(contacts: int, echo: Callable[[str], None] = print, data_dir: Path | None = None) -> dict:
    """Run the demo; returns both runs' per-object metadata (tests assert on it)."""
    from sync_platform.core.instance import ensure_dagster_home

    demo_dir = data_dir or load_settings().data_dir / "demo"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)  # the demo's own state only; a fresh sandbox needs a fresh warehouse
    demo_dir.mkdir(parents=True)
    os.environ[DATA_DIR_ENV] = str(demo_dir)  # the runs below, and their step processes, use it
    os.environ.pop(WAREHOUSE_ENV, None)
    ensure_dagster_home(demo_dir / "dagster_home", postgres=False)
    with _logs_into(_log_file()):
        return _demo(contacts, demo_dir, echo)


def _log_file() -> Path:
    return load_settings().data_dir / "demo.log"


@contextlib.contextmanager
def _logs_into(path: Path) -> Iterator[None]:
    """The platform's, dlt's and Dagster's Python logs go to ``path``, not between the demo's lines."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    loggers = [logging.getLogger(name) for name in ("sync_platform", "dlt", "dagster")]
    saved = [(logger, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
        handler.close()


def _demo(contacts: int, demo_dir: Path, echo: Callable[[str], None]) -> dict:
    with (
        SandboxServer(SandboxConfig(contacts=contacts)) as server,
        SandboxAdminClient(server.base_url) as admin,
    ):
        os.environ[SANDBOX_URL_ENV] = server.base_url
        echo(f"CRM sandbox: {contacts:,} contacts per CRM at {server.base_url}")
        echo(
            f"Warehouse:   {demo_dir / 'warehouse.duckdb'} (DuckDB); "
            f"Dagster home: {demo_dir / 'dagster_home'}"
        )
        echo(
            f"\n1/{STEPS} full sync of Salesforce, HubSpot and Dynamics 365 through Dagster "
            "(job sync_all) ..."
        )
        full = _run_job("sync_all")
        full_requests = {crm: admin.requests(crm=crm) for crm in ("salesforce", "hubspot", "dynamics")}
        echo(f"    done in {full.seconds:.1f} s")
        echo(
            f"2/{STEPS} changing contacts in every CRM: "
            + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in CHANGES.items())
        )
        _make_changes(admin, contacts)
        admin.reset_stats()
        echo(f"3/{STEPS} incremental sync (job sync_all) ...")
        incremental = _run_job("sync_all")
        inc_requests = {crm: admin.requests(crm=crm) for crm in ("salesforce", "hubspot", "dynamics")}
        echo(f"    done in {incremental.seconds:.1f} s")
        frozen = max(1, int(contacts * FROZEN_SHARE))
        echo(
            f"4/{STEPS} the incident: a script edits {frozen} Salesforce contacts without moving any "
            "timestamp; "
            "reconciling every CRM (job reconcile_and_repair) ..."
        )
        before_incident = datetime.now(UTC)
        admin.touch(
            "salesforce", "Contact", frozen, mode="frozen", start=1, stride=max(1, contacts // frozen)
        )
        reconciled = _run_job("reconcile_and_repair", raise_on_error=False)
        echo(f"    done in {reconciled.seconds:.1f} s")
        echo(
            f"5/{STEPS} canonical model: mapping, golden ids, pandera quality gate (job canonical_build) ..."
        )
        canonical = _run_job("canonical_build", raise_on_error=False)  # a blocked gate is a result to show
        echo(f"    done in {canonical.seconds:.1f} s")
        echo(
            f"6/{STEPS} do all systems agree? linked golden records across CRMs, "
            "and the report (job reconcile_report) ..."
        )
        agreement = _run_job("reconcile_report", raise_on_error=False)
        echo(f"    done in {agreement.seconds:.1f} s")
        echo(
            f"7/{STEPS} undo the script in Salesforce itself: the values from before it "
            "(sync-platform restore) ..."
        )
        restored = _restore(before_incident)
        echo(
            f"8/{STEPS} write-back: one change for a customer held by all three CRMs (job outbound_sync) ..."
        )
        written = _write_back()
        echo("")
    _print_summary(full, incremental, full_requests, inc_requests, echo)
    _print_reconcile(reconciled, echo)
    _print_canonical(canonical, echo)
    across = agreement.rows.get(("reconcile", "across_crms"), {})
    for entity, linked in (across.get("linked_golden_records") or {}).items():
        conflicting = across["conflicting_golden_records"][entity]
        fields = ", ".join(f"{f} {n}" for f, n in across["conflicts_by_field"][entity].items()) or "none"
        echo(
            f"across CRMs: {linked} {entity} held by several CRMs, "
            f"{conflicting} with conflicting values ({fields})"
        )
    report = agreement.rows.get(("reconcile", "report"), {}).get("html")
    if report:
        echo(f"reconciliation report (drift chart, counts per class, sample ids): {report}")
    echo(
        f"restore: {restored['records']} Salesforce contact(s) differed from before the script "
        f"({', '.join(restored['fields']) or 'no field'}); {restored['written']} written back"
    )
    if written:
        echo(
            f"write-back: change {written['change_id']} for {written['customer']}: "
            + ", ".join(f"{crm} {record} {status}" for crm, record, status in written["answers"])
        )
    else:
        echo("write-back: no customer is held by all three CRMs in this sandbox")
    echo(
        "\nExplore it: DAGSTER_HOME=data/demo/dagster_home SYNC_PLATFORM_DATA_DIR=data/demo "
        ".venv/bin/dagster dev -w workspace.yaml"
    )
    echo(f"Full logs of every run (debug included): {_log_file()}")
    return {
        "full": full.rows,
        "incremental": incremental.rows,
        "reconcile": reconciled.rows,
        "canonical": canonical.rows,
        "report": agreement.rows,
        "restore": restored,
        "write_back": written,
    }


def _restore(before: datetime) -> dict:
    """Salesforce contacts back to their values before ``before``, as ``sync-platform restore --yes``."""
    from sync_platform.core.config import load_sync_config
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.outbound.restore import plan_restore, record_restore
    from sync_platform.outbound.writers import make_writer

    warehouse = Warehouse.from_env()
    plan = plan_restore(warehouse, "salesforce", "contacts", before)
    results = make_writer("salesforce", load_sync_config().crm("salesforce")).write(plan.writes)
    record_restore(warehouse, plan, results)
    return {
        "records": len(plan.writes),
        "fields": sorted({crm_field for _, crm_field, _, _ in plan.changes}),
        "written": sum(r.ok for r in results),
        "ids": sorted(w.record_id or "" for w in plan.writes),
    }


def _write_back() -> dict | None:
    """One outbound change to a customer every CRM holds, through the outbound_sync job."""
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.outbound.store import OutboundStore

    warehouse = Warehouse.from_env()
    shared = warehouse.query(
        "SELECT customer_id FROM canonical.contacts WHERE deleted_at IS NULL GROUP BY customer_id "
        "HAVING count(DISTINCT source_system) = 3 ORDER BY customer_id LIMIT 1"
    )
    if not shared:
        return None
    change = OutboundStore(warehouse).put(
        "contact", {"title": "VP Customer Success"}, target=shared[0][0], change_id="demo-write-back-1"
    )
    _run_job("outbound_sync", raise_on_error=False)
    answers = sorted(
        (crm, d.record_id or "-", d.status)
        for (change_id, crm), d in OutboundStore(warehouse).delivered().items()
        if change_id == change.change_id
    )
    return {"change_id": change.change_id, "customer": shared[0][0], "answers": answers}


def _print_reconcile(reconciled: RunSummary, echo: Callable[[str], None]) -> None:
    echo("")
    echo(
        f"{'reconcile':<22} {'source':>8} {'missing':>7} {'extra':>6} {'stale':>6} "
        f"{'diverged':>8} {'drift':>7}"
        "  after repair"
    )
    after = {crm: meta for (_, crm), meta in reconciled.rows.items() if "remaining_drift" in meta}
    for (crm, obj), meta in sorted(reconciled.rows.items()):
        if "source_records" not in meta or "missing" not in meta:
            continue
        left = (after.get(crm) or {}).get("remaining_drift", {}).get(obj, 0)
        echo(
            f"{crm + '.' + obj:<22} {meta['source_records']:>8,} {meta['missing']:>7} {meta['extra']:>6} "
            f"{meta['stale']:>6} {meta['diverged']:>8} {meta['drift_pct']:>6.2f}%  {left} differing"
        )


def _print_canonical(canonical: RunSummary, echo: Callable[[str], None]) -> None:
    echo("")
    echo(f"{'canonical':<14} {'rows in':>8} {'good':>8} {'quarantined':>11}  gate / rules broken")
    for (_, entity), meta in sorted(canonical.rows.items()):
        if "rows_in" not in meta:
            continue  # the shareable and duplicates tables: derived from the gated ones
        rules = ", ".join(f"{rule} {n}" for rule, n in (meta.get("rule_counts") or {}).items()) or "none"
        echo(
            f"{entity:<14} {meta.get('rows_in', 0):>8,} {meta.get('rows_good', 0):>8,} "
            f"{meta.get('rows_rejected', 0):>11,}  {meta.get('gate')} ({rules})"
        )


def _print_summary(
    full: RunSummary, inc: RunSummary, full_req: dict, inc_req: dict, echo: Callable[[str], None]
) -> None:
    header = (
        f"{'CRM':<11} {'object':<10} {'rows':>8} {'CRM rec/s':>10} | {'new':>4} {'upd':>4} {'del':>4} "
        f"{'re-read':>7} {'lag':>8}"
    )
    echo(header)
    echo("-" * len(header))
    for (crm, obj), meta in sorted(inc.rows.items()):
        first = full.rows.get((crm, obj), {})
        lag = meta.get("lag_s", -1)
        echo(
            f"{crm:<11} {obj:<10} {meta.get('rows_total', 0):>8,} "
            f"{first.get('crm_records_per_s', 0):>10,.0f} | {meta.get('rows_inserted', 0):>4} "
            f"{meta.get('rows_updated', 0):>4} {meta.get('rows_deleted', 0):>4} "
            f"{meta.get('rows_reread_in_look_back', 0):>7} {_human(lag):>8}"
        )
    echo("")
    expected = CHANGES["updated_by_users"] + CHANGES["updated_by_automation"]
    echo(
        f"Changed per CRM (contacts): {CHANGES['created']} new, {expected} updated, "
        f"{CHANGES['deleted']} deleted."
    )
    echo(
        "CRM rec/s: the full sync's throughput per CRM; "
        "HubSpot is paced by its search limit (about 5 requests/s)."
    )
    echo(
        "API requests   full sync: "
        + ", ".join(f"{c} {n}" for c, n in full_req.items())
        + "   incremental: "
        + ", ".join(f"{c} {n}" for c, n in inc_req.items())
    )


def _human(seconds: float) -> str:
    if seconds is None or seconds < 0:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 86400:.1f} d" if seconds >= 172_800 else f"{seconds / 3600:.1f} h"
