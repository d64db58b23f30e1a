"""Raw-history figures: what keeping prior versions adds to an incremental load into a large table.

    .venv/bin/python benchmarks/raw_history.py [--rows 1000000] [--changes 300] [--sync-contacts 1000000]

Two baselines, both measured in the same run:

- **the incremental sync** (the issue's yardstick): the Salesforce source reads ``--changes`` edited
  contacts from the sandbox (``--sync-contacts`` records, loaded whole first) and dlt merges them;
- **the merge alone**, without HTTP: a DuckDB warehouse holds ``raw_salesforce.contacts`` with
  ``--rows`` records (loaded by dlt, merge on ``id``, as ingestion does) and its history; each round
  dlt merges ``--changes`` changed records.

The measured figure adds ``RawHistory.record`` as the raw asset calls it: the catch-up copy of the
load's rows, duplicates skipped, field-level diffs only when a mass change is possible. Five rounds;
median and best. The goal is the sync with history at most 1.2x the sync without. The one-off first
copy of the whole table (an existing install's first run) is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from _common import in_child, sandbox_process


def run(rows: int, changes: int, directory: str, rounds: int = 5) -> dict:
    import os
    from datetime import UTC, datetime

    import polars as pl

    os.environ["SYNC_PLATFORM_DATA_DIR"] = directory
    os.environ.pop("SYNC_PLATFORM_WAREHOUSE", None)
    from sync_platform.core.settings import load_settings
    from sync_platform.core.warehouse import Warehouse, apply_dlt_defaults, run_pipeline
    from sync_platform.ingest.history import RawHistory

    apply_dlt_defaults()
    warehouse = Warehouse.from_settings(load_settings())
    pipeline = warehouse.pipeline("bench_history", "raw_salesforce")

    def contacts(ids: pl.Series, title: str) -> pl.DataFrame:
        return pl.DataFrame({"i": ids}).select(
            pl.format("003{}", pl.col("i").cast(pl.String).str.zfill(12)).alias("id"),
            pl.format("person{}@example.com", "i").alias("email"),
            pl.format("First{}", pl.col("i") % 5000).alias("first_name"),
            pl.format("Last{}", pl.col("i") % 20000).alias("last_name"),
            pl.format("+1415{}", (pl.col("i") % 10_000_000).cast(pl.String).str.zfill(7)).alias("phone"),
            pl.lit(title).alias("title"),
            pl.lit(datetime.now(UTC)).alias("system_modstamp"),
            pl.lit(None, pl.Datetime("us", "UTC")).alias("deleted_at"),
        )

    def load(frame: pl.DataFrame) -> float:
        started = time.perf_counter()
        with warehouse.turn():
            run_pipeline(
                pipeline, frame.to_arrow(), table_name="contacts", write_disposition="merge", primary_key="id"
            )
        return time.perf_counter() - started

    initial_load = load(contacts(pl.int_range(0, rows, eager=True), "CTO"))
    history = RawHistory(warehouse)
    started = time.perf_counter()
    first = history.record("salesforce", ["contacts"])[0]
    first_copy = time.perf_counter() - started
    plain, with_history, kept = [], [], 0
    for n in range(rounds):
        changed = contacts(pl.int_range(n * changes, (n + 1) * changes, eager=True), f"Title {n}")
        merge = load(changed)
        started = time.perf_counter()
        kept += history.record("salesforce", ["contacts"], diff_above=0.2)[0].versions
        copy = time.perf_counter() - started
        plain.append(merge)
        with_history.append(merge + copy)
    return {
        "initial_load": initial_load,
        "first_copy": first_copy,
        "first_versions": first.versions,
        "plain": plain,
        "with_history": with_history,
        "kept": kept,
    }


def run_sync(base_url: str, changes: int, directory: str, rounds: int = 5) -> dict:
    """Incremental syncs of ``changes`` edits against the sandbox, each followed by the history copy."""
    import os
    from pathlib import Path

    os.environ["SYNC_PLATFORM_DATA_DIR"] = directory
    os.environ.pop("SYNC_PLATFORM_WAREHOUSE", None)
    from sync_platform.core.warehouse import DUCKDB, Warehouse, apply_dlt_defaults, run_pipeline
    from sync_platform.ingest.history import RawHistory
    from sync_platform.ingest.pipeline import build_pipeline
    from sync_platform.ingest.sources.salesforce import salesforce_source
    from sync_platform.sandbox.client import SandboxAdminClient

    apply_dlt_defaults()
    warehouse = Warehouse(DUCKDB, path=Path(directory) / "sync.duckdb")
    pipeline = build_pipeline("salesforce", warehouse)
    admin = SandboxAdminClient(base_url)

    def sync() -> float:
        started = time.perf_counter()
        source = salesforce_source(
            instance_url=base_url,
            client_id="sandbox-client",
            client_secret="sandbox-secret",
            objects=["contacts"],
        )
        with warehouse.turn():
            run_pipeline(pipeline, source)
        return time.perf_counter() - started

    initial = sync()
    history = RawHistory(warehouse)
    history.record("salesforce", ["contacts"], diff_above=0.2)
    ids = [
        r[0]
        for r in warehouse.query(
            "SELECT id FROM raw_salesforce.contacts ORDER BY id LIMIT ?", (rounds * changes,)
        )
    ]
    plain, with_history = [], []
    for n in range(rounds):
        admin.update("salesforce", "Contact", ids[n * changes : (n + 1) * changes], {"Title": f"Title {n}"})
        seconds = sync()
        started = time.perf_counter()
        history.record("salesforce", ["contacts"], diff_above=0.2)
        plain.append(seconds)
        with_history.append(seconds + time.perf_counter() - started)
    return {"initial": initial, "plain": plain, "with_history": with_history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--sync-contacts", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="history-bench-") as tmp:
        with sandbox_process(args.sync_contacts) as (details, _):
            s = in_child(run_sync, details["base_url"], args.changes, tmp)
        r = in_child(run, args.rows, args.changes, tmp)
    sync_plain, sync_hist = statistics.median(s["plain"]), statistics.median(s["with_history"])
    print(
        f"incremental Salesforce sync of {args.changes} edits, sandbox of {args.sync_contacts:,} contacts "
        f"(first full sync {s['initial']:.1f} s), 5 rounds:"
    )
    print(f"  sync alone (baseline):        median {sync_plain:.3f} s, best {min(s['plain']):.3f} s")
    print(f"  sync + history copy:          median {sync_hist:.3f} s, best {min(s['with_history']):.3f} s")
    print(f"  ratio: {sync_hist / sync_plain:.2f}x median (goal <= 1.2x)\n")
    print(
        f"{args.rows:,} raw contacts loaded by dlt in {r['initial_load']:.1f} s; first history copy "
        f"(every first version, once per install) {r['first_copy']:.2f} s for {r['first_versions']:,}"
    )
    med_plain, med_hist = statistics.median(r["plain"]), statistics.median(r["with_history"])
    best_plain, best_hist = min(r["plain"]), min(r["with_history"])
    print(f"\nincremental load of {args.changes} changes into {args.rows:,} rows, 5 rounds:")
    print(f"  dlt merge alone (baseline):   median {med_plain:.3f} s, best {best_plain:.3f} s")
    print(f"  merge + history copy:         median {med_hist:.3f} s, best {best_hist:.3f} s")
    print(
        f"  ratio: {med_hist / med_plain:.2f}x median, {best_hist / best_plain:.2f}x best (goal <= 1.2x); "
        f"versions kept {r['kept']:,} of {5 * args.changes:,}; peak RSS {r['peak_rss_mb']:,.0f} MB"
    )


if __name__ == "__main__":
    main()
