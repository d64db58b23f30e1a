"""Ingest figures: our dlt pipeline vs a plain baseline on the same pages, and throttled HubSpot.

    .venv/bin/python benchmarks/ingest.py [--sizes 100000 1000000] [--throttled-contacts 20000]

1. Unthrottled full refresh of Salesforce contacts (2,000/page) into DuckDB, N contacts:
   - ours: the real ``salesforce_source`` through the real pipeline (``build_pipeline``: Arrow pages,
     merge on Id, the production dlt and DuckDB settings);
   - baseline: plain ``requests`` over the same SOQL pages, each page turned into an Arrow table
     and inserted with one DuckDB ``INSERT ... SELECT``.
   Each runs in a fresh process (peak RSS is its own); the sandbox runs in another process. The last
   lines compare peak RSS across sizes: streaming means ours must not grow with N.
2. HubSpot full refresh with the sandbox at 100 requests / 10 s and search at 5 / s: achieved
   request rate of each limiter as a share of its ceiling, and 429s seen.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import in_child, sandbox_process

SOQL = (
    "SELECT Id, OwnerId, CreatedDate, LastModifiedDate, SystemModstamp, IsDeleted, FirstName, LastName, "
    "Email, Phone, Title, AccountId, LeadSource, Customer_Status__c, HasOptedOutOfEmail FROM Contact "
    "WHERE SystemModstamp >= 1970-01-01T00:00:00.000Z ORDER BY SystemModstamp, Id"
)


def run_pipeline(base_url: str, workdir: str) -> dict:
    import os
    from pathlib import Path

    os.environ["SYNC_PLATFORM_DATA_DIR"] = workdir  # dlt's pipeline state goes to the throwaway dir

    from sync_platform.core.warehouse import DUCKDB, Warehouse
    from sync_platform.ingest.pipeline import build_pipeline
    from sync_platform.ingest.sources.common import SyncReport
    from sync_platform.ingest.sources.http import HttpPolicy
    from sync_platform.ingest.sources.salesforce import salesforce_source

    report = SyncReport("salesforce")
    pipeline = build_pipeline("salesforce", Warehouse(DUCKDB, path=Path(workdir) / "ours.duckdb"))
    started = time.perf_counter()
    pipeline.run(
        salesforce_source(
            instance_url=base_url,
            client_id="sandbox-client",
            client_secret="sandbox-secret",
            objects=["contacts"],
            policy=HttpPolicy(),
            report=report,
        )
    )
    elapsed = time.perf_counter() - started
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql("SELECT count(*) FROM contacts")[0][0]
    return {"seconds": elapsed, "rows": rows, "requests": report.stats.requests}


def run_baseline(base_url: str, workdir: str) -> dict:
    import duckdb
    import pyarrow as pa
    import requests

    http = requests.Session()
    token = http.post(
        f"{base_url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
        },
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    conn = duckdb.connect(f"{workdir}/baseline.duckdb")
    started = time.perf_counter()
    page = http.get(f"{base_url}/services/data/v59.0/queryAll/", params={"q": SOQL}, headers=headers).json()
    created = False
    while True:
        records = [{k: v for k, v in r.items() if k != "attributes"} for r in page["records"]]
        batch = pa.Table.from_pylist(records)  # noqa: F841 - read by DuckDB's replacement scan
        if not created:
            conn.execute("CREATE TABLE contacts AS SELECT * FROM batch")
            created = True
        else:
            conn.execute("INSERT INTO contacts SELECT * FROM batch")
        if page.get("done", True):
            break
        page = http.get(f"{base_url}{page['nextRecordsUrl']}", headers=headers).json()
    elapsed = time.perf_counter() - started
    rows = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
    conn.close()
    return {"seconds": elapsed, "rows": rows}


def run_throttled(base_url: str, workdir: str) -> dict:
    import dlt

    from sync_platform.ingest.sources.common import SyncReport
    from sync_platform.ingest.sources.hubspot import hubspot_source

    report = SyncReport("hubspot")
    pipeline = dlt.pipeline(
        pipeline_name="bench_hs",
        destination=dlt.destinations.duckdb(f"{workdir}/hs.duckdb"),
        dataset_name="raw",
        pipelines_dir=workdir,
    )
    started = time.perf_counter()
    pipeline.run(
        hubspot_source(
            host=base_url,
            access_token="pat-sandbox-0000-0000",
            requests_per_10s=100,
            search_per_second=5,
            objects=["contacts"],
            report=report,
        )
    )
    elapsed = time.perf_counter() - started
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql("SELECT count(*) FROM contacts")[0][0]
    resources = report.resources.values()
    window = max(r.last_page_at for r in resources) - min(r.started_at for r in resources)
    return {
        "seconds": elapsed,
        "extract_seconds": window,
        "requests": report.stats.requests,
        "http_429": report.stats.rate_limited,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[100_000, 1_000_000],
        help="contacts per unthrottled run; give none to run only the throttled part",
    )
    parser.add_argument("--throttled-contacts", type=int, default=20_000, help="0 skips the throttled part")
    args = parser.parse_args()

    print("1. unthrottled Salesforce contacts full refresh into DuckDB (each side in a fresh process)")
    print(
        f"{'contacts':>10} {'side':<9} {'seconds':>8} {'records/s':>10} "
        f"{'peak RSS MB':>12} {'time vs baseline':>17}"
    )
    peaks: dict[str, list[tuple[int, float]]] = {"baseline": [], "ours": []}
    for size in args.sizes:
        with sandbox_process(size) as (details, _), tempfile.TemporaryDirectory() as workdir:
            base = details["base_url"]
            baseline = in_child(run_baseline, base, workdir)
            ours = in_child(run_pipeline, base, workdir)
            assert ours["rows"] == baseline["rows"] == size, (ours, baseline)
            for side, r in (("baseline", baseline), ("ours", ours)):
                ratio = r["seconds"] / baseline["seconds"]
                print(
                    f"{size:>10,} {side:<9} {r['seconds']:>8.1f} {size / r['seconds']:>10,.0f} "
                    f"{r['peak_rss_mb']:>12.0f} {ratio:>16.2f}x"
                )
                peaks[side].append((size, r["peak_rss_mb"]))
    if len(args.sizes) > 1:
        for side, figures in peaks.items():
            growth = figures[-1][1] / figures[0][1]
            steps = " -> ".join(f"{mb:.0f} MB at {size:,}" for size, mb in figures)
            rows = figures[-1][0] / figures[0][0]
            print(f"   peak RSS by N, {side:<8}: {steps} ({growth:.2f}x for {rows:.0f}x rows)")

    n = args.throttled_contacts
    if not n:
        return
    print(f"\n2. throttled HubSpot full refresh, {n:,} contacts, sandbox at 100 req / 10 s and search 5 / s")
    with (
        sandbox_process(n, "--hubspot-per-10s", "100") as (details, _),
        tempfile.TemporaryDirectory() as workdir,
    ):
        r = in_child(run_throttled, details["base_url"], workdir)
    rate, extract_rate = r["requests"] / r["seconds"], r["requests"] / r["extract_seconds"]
    print(
        f"   {r['rows']:,} rows, {r['requests']} requests; "
        f"whole pipeline {r['seconds']:.1f} s = {rate:.2f} req/s "
        f"({rate / 5:.0%} of the 5 req/s search ceiling); extraction {r['extract_seconds']:.1f} s = "
        f"{extract_rate:.2f} req/s ({extract_rate / 5:.0%}); 429s: {r['http_429']}"
    )


if __name__ == "__main__":
    main()
