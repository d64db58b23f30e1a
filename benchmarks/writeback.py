"""Write-back figures: upserts per CRM through the real writers, paced at each CRM's real ceiling.

    .venv/bin/python benchmarks/writeback.py [--records 10000] [--dynamics-records 3000]
                                             [--create-share 0.2] [--hubspot-ceiling 100]

For each CRM, ``--records`` contact changes (``--dynamics-records`` for Dynamics) are planned by
``outbound.plan.plan_changes`` (the mapping files read backwards) and sent by that CRM's writer
(``outbound.writers.make_writer``) against the sandbox, in its own process, with the client pacing
of ``data/sync.yaml``. The mix is a write-back's: ``1 - --create-share`` updates by record id of
existing sandbox contacts (their title), the rest creates by the CRM's upsert key (Salesforce
``External_Id__c``, HubSpot ``email``, Dynamics ``externalid``).

The sandbox's ceilings are set, through its admin API, to the real CRMs' published ones: HubSpot
``--hubspot-ceiling`` requests per rolling 10 s (default: ``requests_per_window`` of ``sync.yaml``,
100, a Free/Starter private app; Pro/Enterprise is 190, the sandbox's own default), Dynamics 6,000
requests per 5 minutes per user, Salesforce 100,000 requests a day (Enterprise, before per-licence
extras). Salesforce has no per-window ceiling: its writer is not paced, and its share is of the
daily budget. For HubSpot and Dynamics the share is the rate the API calls went out at (first to
last; token requests are not rate-limited and not counted) over the rate the ceiling allows; in a
run longer than a window, the most calls any one window held over the ceiling. The goal is >= 95 % with no
429 left unhandled. Every result must be ok, the sandbox's record count must grow by the creates,
and a sample of records is read back through the admin API.

Dynamics writes one record per call (no ``$batch``), so 10,000 records take about nine minutes at
its ceiling; its smaller default keeps the whole script to about three minutes.

The planning is timed too: ``ReverseMapping.values`` and ``plan_changes`` per 1,000 changes, in a
child process with no HTTP (median of 5 runs). So is conflict detection (``conflicts.screen``):
1,000 updates against a DuckDB warehouse holding ``--conflict-rows`` raw Salesforce contacts and
their history, a tenth of them edited in the CRM since the request (median of 5).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import in_child, sandbox_process, timed

CRMS = ("salesforce", "hubspot", "dynamics")
OBJECT = {"salesforce": "Contact", "hubspot": "contacts", "dynamics": "contacts"}  # the sandbox's names
TITLE = {"salesforce": "Title", "hubspot": "jobtitle", "dynamics": "jobtitle"}
SAMPLE = 100  # records read back through the admin API per CRM


def _changes(crm: str, records: int, create_share: float, tag: str) -> list:
    """Canonical contact changes: updates of existing sandbox contacts by id, then creates."""
    from datetime import UTC, datetime

    from sync_platform.outbound.store import Change
    from sync_platform.sandbox.schema import OBJECTS

    spec = OBJECTS[crm][OBJECT[crm]]
    creates = round(records * create_share)
    now = datetime.now(UTC)
    out = [
        Change(
            f"{tag}-{crm}-u{i}", "contact", f"{crm}:{spec.format_id(i)}", {"title": f"Buyer {tag} {i}"}, now
        )
        for i in range(records - creates)
    ]
    out += [
        Change(
            f"{tag}-{crm}-c{i}",
            "contact",
            None,
            {
                "first_name": "Ada",
                "last_name": f"Bench{i}",
                "email": f"wb-{tag}-{i}@example.com",
                "title": f"New {tag} {i}",
            },
            now,
        )
        for i in range(creates)
    ]
    return out


def _plan(crm: str, changes: list, mappings: dict) -> list:
    from sync_platform.core.config import OutboundConfig
    from sync_platform.outbound.plan import plan_changes

    config = OutboundConfig(create_in={"contact": crm})
    # every target is "<crm>:<id>" or a create: no golden id to look up, so no warehouse is read
    plan = plan_changes(None, changes, mappings, config, set())  # type: ignore[arg-type]
    refused = [p.refused for p in plan.planned if p.refused]
    assert not refused and not plan.unknown_targets, (refused[:3], plan.unknown_targets[:3])
    return [p.write for p in plan.planned]


def run_writes(base_url: str, crm: str, records: int, create_share: float, ceilings: dict) -> dict:
    """Plan and send ``records`` changes to one CRM; what it cost and whether everything landed."""
    import os

    os.environ["SYNC_PLATFORM_SANDBOX_URL"] = base_url
    os.environ.pop("SYNC_PLATFORM_SANDBOX_CA", None)
    from sync_platform.canonical.mapping.loader import load_mappings
    from sync_platform.core.config import load_sync_config
    from sync_platform.ingest.sources.http import RequestStats
    from sync_platform.outbound.writers import make_writer
    from sync_platform.sandbox.client import SandboxAdminClient

    tag = f"{int(time.time())}"
    writes = _plan(crm, _changes(crm, records, create_share, tag), load_mappings())
    cfg = load_sync_config().crm(crm)
    admin = SandboxAdminClient(base_url)
    admin.set_limits(**ceilings, reset_windows=True)  # nothing before this run counts in its windows
    admin.reset_stats()
    before = admin.info()["objects"][crm][OBJECT[crm]]["records"]

    stats = RequestStats()
    writer = make_writer(crm, cfg, stats)
    sent: list[float] = []  # when each API call left (token requests aside): the pace achieved
    send = writer.client.session.request  # type: ignore[attr-defined]

    def stamped(method, url, *args, **kwargs):
        if not url.rstrip("/").endswith("/token"):
            sent.append(time.monotonic())
        return send(method, url, *args, **kwargs)

    writer.client.session.request = stamped  # type: ignore[attr-defined]
    started = time.perf_counter()
    results = writer.write(writes)
    seconds = time.perf_counter() - started

    rows = [r for r in admin.stats()["requests"] if r["crm"] == crm]
    calls = sum(r["count"] for r in rows if r["endpoint"] != "token")
    failed = [r for r in results if not r.ok]
    step = max(1, len(writes) // SAMPLE)
    mismatched = 0
    for write, result in list(zip(writes, results, strict=True))[::step][:SAMPLE]:
        record = admin.get(crm, OBJECT[crm], result.record_id)
        if record.get(TITLE[crm]) != write.values[TITLE[crm]]:
            mismatched += 1
    return {
        "records": len(writes),
        "creates": sum(w.upsert_key is not None for w in writes),
        "seconds": seconds,
        "calls": calls,
        "client_requests": stats.requests,
        "client_429": stats.rate_limited,
        "sandbox_429": sum(r["count"] for r in rows if r["status"] == 429),
        "retries": stats.retries,
        "throttle_wait": stats.throttle_wait_seconds,
        "budget": (stats.budget_used, stats.budget_limit),
        "failed": len(failed),
        "first_failure": failed[0].error if failed else None,
        "created": sum(r.created for r in results),
        "grew_by": admin.info()["objects"][crm][OBJECT[crm]]["records"] - before,
        "sampled": len(list(zip(writes, results, strict=True))[::step][:SAMPLE]),
        "mismatched": mismatched,
        "paced_at": (cfg.requests_per_window, cfg.window_seconds),
        "sent": sent,
    }


def run_planning(records: int, create_share: float) -> dict:
    """Seconds per 1,000 changes of the mapping read backwards, alone and as the whole planner."""
    from sync_platform.canonical.mapping.loader import load_mappings
    from sync_platform.outbound.plan import ReverseMapping

    mappings = load_mappings()
    out: dict = {}
    for crm in CRMS:
        changes = _changes(crm, records, create_share, "plan")
        reverse = ReverseMapping(mappings[crm])
        sample = changes[:: max(1, len(changes) // 1000)][:1000]  # the same mix of updates and creates
        values, _ = timed(lambda s=sample, r=reverse: [r.values("contact", c.fields) for c in s])
        planned, writes = timed(lambda c=changes, crm=crm: _plan(crm, c, mappings))
        assert len(writes) == len(changes)
        out[crm] = {
            "values_per_1000": values["seconds"] * 1000 / len(sample),
            "plan_per_1000": planned["seconds"] * 1000 / len(changes),
            "plan_best_per_1000": planned["best"] * 1000 / len(changes),
        }
    return {"crms": out}


def run_conflicts(rows: int, directory: str, n: int = 1000) -> dict:
    """Seconds of ``screen`` for ``n`` updates against ``rows`` raw contacts, a tenth in conflict."""
    import os
    from datetime import UTC, datetime, timedelta

    import polars as pl

    os.environ["SYNC_PLATFORM_DATA_DIR"] = directory
    os.environ.pop("SYNC_PLATFORM_WAREHOUSE", None)
    from sync_platform.canonical.mapping.loader import load_mappings
    from sync_platform.core.config import ConflictConfig, OutboundConfig
    from sync_platform.core.settings import load_settings
    from sync_platform.core.warehouse import Warehouse, apply_dlt_defaults, run_pipeline
    from sync_platform.ingest.history import RawHistory
    from sync_platform.outbound.conflicts import screen
    from sync_platform.outbound.plan import plan_changes
    from sync_platform.outbound.store import Change

    apply_dlt_defaults()
    warehouse = Warehouse.from_settings(load_settings())
    pipeline = warehouse.pipeline("bench_conflicts", "raw_salesforce")

    def contacts(ids: pl.Series, title: str, at: datetime) -> pl.DataFrame:
        return pl.DataFrame({"i": ids}).select(
            pl.format("003{}", pl.col("i").cast(pl.String).str.zfill(12)).alias("id"),
            pl.format("person{}@example.com", "i").alias("email"),
            pl.lit(title).alias("title"),
            pl.lit(at).alias("system_modstamp"),
            pl.lit(None, pl.Datetime("us", "UTC")).alias("deleted_at"),
        )

    def load(frame: pl.DataFrame) -> None:
        with warehouse.turn():
            run_pipeline(
                pipeline, frame.to_arrow(), table_name="contacts", write_disposition="merge", primary_key="id"
            )
        RawHistory(warehouse).record("salesforce", ["contacts"])

    start = datetime.now(UTC) - timedelta(hours=2)
    load(contacts(pl.int_range(0, rows, eager=True), "Engineer", start))
    asked = datetime.now(UTC)  # the support system asks, then the CRM edits a tenth
    picked = pl.int_range(0, rows, step=max(1, rows // n), eager=True)[:n]
    load(contacts(picked[: n // 10], "Edited in the CRM", datetime.now(UTC)))
    ids = contacts(picked, "", start)["id"].to_list()
    changes = [
        Change(f"c{i}", "contact", f"salesforce:{record}", {"title": "Ours"}, asked)
        for i, record in enumerate(ids)
    ]
    mappings = load_mappings()
    planned = plan_changes(warehouse, changes, mappings, OutboundConfig(), set()).planned
    by_id = {c.change_id: c for c in changes}
    config = ConflictConfig()
    found, result = timed(lambda: screen(warehouse, planned, by_id, mappings, config))
    return {
        "per_1000": found["seconds"] * 1000 / n,
        "best_per_1000": found["best"] * 1000 / n,
        "conflicts": len(result.detected),
        "rows": rows,
    }


def _pace(sent: list[float], window: float) -> tuple[float | None, int | None]:
    """(calls per window at the pace they went out, first to last; the most calls any one window
    held, when the run lasted longer than a window)."""
    if len(sent) < 2 or sent[-1] == sent[0]:
        return None, None
    rate = (len(sent) - 1) / (sent[-1] - sent[0]) * window
    if sent[-1] - sent[0] < window:
        return rate, None
    busiest, start = 0, 0
    for end, at in enumerate(sent):
        while sent[start] <= at - window:
            start += 1
        busiest = max(busiest, end - start + 1)
    return rate, busiest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000, help="changes per CRM (Salesforce, HubSpot)")
    parser.add_argument(
        "--dynamics-records", type=int, default=3_000, help="changes for Dynamics (one call per record)"
    )
    parser.add_argument("--create-share", type=float, default=0.2, help="share of creates by upsert key")
    parser.add_argument(
        "--hubspot-ceiling",
        type=int,
        default=None,
        help="the sandbox's HubSpot requests per 10 s (default: sync.yaml's requests_per_window)",
    )
    parser.add_argument("--crms", nargs="*", default=list(CRMS), choices=CRMS)
    parser.add_argument(
        "--conflict-rows", type=int, default=1_000_000, help="raw contacts the conflict check runs against"
    )
    args = parser.parse_args()

    from sync_platform.core.config import load_sync_config  # the pacing the writers will use

    config = load_sync_config()
    hubspot = args.hubspot_ceiling or config.crm("hubspot").requests_per_window or 190
    ceilings = {"salesforce_daily": 100_000, "hubspot_per_10s": hubspot, "dynamics_per_5min": 6_000}
    # crm -> (ceiling, window seconds, how it is named)
    windows = {
        "salesforce": (100_000, 86_400.0, "100,000 / day"),
        "hubspot": (hubspot, 10.0, f"{hubspot} / 10 s"),
        "dynamics": (6_000, 300.0, "6,000 / 5 min"),
    }
    sizes = {crm: args.dynamics_records if crm == "dynamics" else args.records for crm in args.crms}
    contacts = max(round(n * (1 - args.create_share)) for n in sizes.values())

    started = time.perf_counter()
    results = {}
    with sandbox_process(max(contacts, 1000)) as (details, startup):
        print(
            f"sandbox: {max(contacts, 1000):,} contacts per CRM, ready in {startup:.1f} s; ceilings set "
            f"through the admin API: {', '.join(f'{k}={v:,}' for k, v in ceilings.items())}"
        )
        for crm in args.crms:
            results[crm] = in_child(
                run_writes, details["base_url"], crm, sizes[crm], args.create_share, ceilings
            )
    planning = in_child(run_planning, args.records, args.create_share)
    with tempfile.TemporaryDirectory(prefix="writeback-bench-") as tmp:
        conflicts = in_child(run_conflicts, args.conflict_rows, tmp)

    print(
        f"\nwrite-back of contact changes, {1 - args.create_share:.0%} updates by id / "
        f"{args.create_share:.0%} creates by upsert key, one writer per CRM in a fresh process"
    )
    header = (
        f"{'crm':<11}{'records':>8}{'calls':>7}{'wall s':>8}{'rec/s':>8}{'paced at':>15}"
        f"{'ceiling':>15}{'calls/window':>14}{'share':>8}{'429s':>6}{'retries':>8}{'landed':>9}"
    )
    print(header)
    for crm, r in results.items():
        ceiling, window, named = windows[crm]
        limit, per = r["paced_at"]
        paced = f"{limit:,} / {per:g} s" if limit else "not paced"
        if crm == "salesforce":
            per_window, share = "n/a", f"{r['calls'] / ceiling:.2%}"
        else:
            rate, busiest = _pace(r["sent"], window)
            achieved = busiest or rate  # a run longer than a window: the window that held the most
            per_window = f"{achieved:,.0f}" if achieved else "n/a"
            share = f"{achieved / ceiling:.1%}" if achieved else "n/a"
        landed = r["failed"] == 0 and r["mismatched"] == 0 and r["grew_by"] == r["creates"]
        print(
            f"{crm:<11}{r['records']:>8,}{r['calls']:>7,}{r['seconds']:>8.1f}"
            f"{r['records'] / r['seconds']:>8,.0f}"
            f"{paced:>15}{named:>15}{per_window:>14}{share:>8}{r['client_429']:>6}{r['retries']:>8}"
            f"{'yes' if landed else 'NO':>9}"
        )
    print()
    for crm, r in results.items():
        used, limit = r["budget"]
        budget = f"; Sforce-Limit-Info after: {used:,}/{limit:,}" if used is not None else ""
        print(
            f"  {crm}: {r['client_requests']:,} requests by the client's count, {r['calls']:,} API calls "
            f"by the sandbox's, 429s client {r['client_429']} / sandbox {r['sandbox_429']}, "
            f"throttle wait {r['throttle_wait']:.1f} s, {r['created']:,} created (store grew by "
            f"{r['grew_by']:,}, {r['creates']:,} creates sent), {r['failed']} results not ok, "
            f"{r['sampled'] - r['mismatched']}/{r['sampled']} sampled records read back as written{budget}"
        )
        if r["first_failure"]:
            print(f"    first failure: {r['first_failure']}")
        if crm == "salesforce":
            print(
                f"    share column: the daily budget ({windows[crm][2]}) this run used; no per-window ceiling"
            )
        else:
            rate, busiest = _pace(r["sent"], windows[crm][1])
            span = r["sent"][-1] - r["sent"][0] if r["sent"] else 0.0
            print(
                f"    calls sent (429s included) per {windows[crm][1]:g} s at the pace they went out: "
                f"{rate or 0:,.1f} ({len(r['sent']):,} calls over {span:.1f} s, first to last)"
                + (
                    f"; the busiest {windows[crm][1]:g} s window held {busiest:,}: the share column"
                    if busiest
                    else ": the share column"
                )
            )
        if crm == "dynamics" and r["records"] < args.records:
            rate = r["records"] / r["seconds"]
            print(
                f"    at this measured rate {args.records:,} records would take {args.records / rate:,.0f} s "
                f"(projected, not run; --dynamics-records {args.records} runs it)"
            )

    print(
        f"\nconflict detection (conflicts.screen) per 1,000 updates against {conflicts['rows']:,} raw "
        f"contacts with history, {conflicts['conflicts']} in conflict: "
        f"median {conflicts['per_1000'] * 1000:.1f} ms, best {conflicts['best_per_1000'] * 1000:.1f} ms"
    )
    print("planning (mapping read backwards) per 1,000 records, median of 5:")
    for crm, p in planning["crms"].items():
        line = (
            f"  {crm:<11} ReverseMapping.values {p['values_per_1000'] * 1000:6.2f} ms, "
            f"plan_changes {p['plan_per_1000'] * 1000:6.2f} ms (best {p['plan_best_per_1000'] * 1000:.2f} ms)"
        )
        if crm in results:
            r = results[crm]
            per_1000 = r["seconds"] * 1000 / r["records"]
            line += f" = {p['plan_per_1000'] / per_1000:.2%} of the {per_1000:.2f} s writing 1,000 takes"
        print(line)
    print(f"\nwhole script: {time.perf_counter() - started:.0f} s (sandbox start-up included)")


if __name__ == "__main__":
    main()
