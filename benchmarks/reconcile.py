"""Reconciliation figures: 1,000,000 source x 1,000,000 warehouse records with 0.5 % seeded drift.

    .venv/bin/python benchmarks/reconcile.py [--records 1000000] [--no-baseline]

The input is a synthetic contact listing (eight fields, ms-precision UTC cursors) and a warehouse
copy of it (cursors naive with microseconds, as a DuckDB round trip returns them, rows shuffled)
with 0.5 % drift spread evenly over the four classes: missing, extra, stale (older cursor, older
title) and diverged (same cursor, other title). Each phase runs in a fresh process, so its peak
RSS is its own:

- content_hash: hashing both sides' eight fields (the phase writes the lean id/cursor/hash frames);
- classify: the comparison itself, on the lean frames;
- SQL bisection: the same classification inside an in-memory DuckDB (lean tables loaded first,
  not timed), bucket checksums then only differing buckets fetched;
- pandas baseline: a naive ``merge(how="outer")`` + ``np.select`` on the same lean frames.

Each phase is checked to find exactly the seeded ids. Timed phases run several times in their
process (the first, cold, included): median and best are printed, as timings on a shared machine
vary by tens of percent from run to run.

Needs pandas for the baseline (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import tempfile
import time

from _common import in_child, timed

FIELDS = [
    "FirstName",
    "LastName",
    "Email",
    "Phone",
    "Title",
    "HasOptedOutOfEmail",
    "NumberOfEmployees",
    "SystemModstamp",
]
DRIFT = 0.005
CLASSES = ("missing", "extra", "stale", "diverged")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _digest(pairs: list[tuple[str, str]]) -> str:
    return hashlib.sha256("\n".join(f"{i}:{c}" for i, c in sorted(pairs)).encode()).hexdigest()


# ---------------------------------------------------------------- input
def generate(records: int, directory: str) -> dict:
    """Source and warehouse listings with ``DRIFT`` spread over the four classes; seeded ids' digest."""
    from datetime import UTC, datetime

    import numpy as np
    import polars as pl

    i = pl.int_range(records, dtype=pl.Int64)
    titles = ["CEO", "CTO", "Engineer", "Analyst", "Manager", "Director", "Consultant", "Buyer"]
    source = pl.select(
        pl.format("003{}", i.cast(pl.String).str.zfill(15)).alias("id"),
        pl.format("First{}", (i * 7919) % 5003).alias("FirstName"),
        pl.format("Last{}", (i * 104729) % 20011).alias("LastName"),
        pl.format("user{}@example.com", i).alias("Email"),
        pl.when(i % 9 == 0).then(None).otherwise(pl.format("+4930{}", (i * 31) % 10_000_000)).alias("Phone"),
        pl.lit(pl.Series(titles)).gather(i % len(titles)).alias("Title"),
        (i % 11 == 0).alias("HasOptedOutOfEmail"),
        pl.when(i % 13 == 0).then(None).otherwise(i % 5000).alias("NumberOfEmployees"),
        (pl.lit(datetime(2024, 1, 1, tzinfo=UTC)) + pl.duration(milliseconds=i * 1237))
        .dt.cast_time_unit("ms")
        .alias("SystemModstamp"),
    )
    per_class = int(records * DRIFT) // 4
    picks = np.random.default_rng(5).choice(records, size=3 * per_class, replace=False)
    missing, stale, diverged = (
        source["id"].gather(picks[k * per_class : (k + 1) * per_class]) for k in range(3)
    )
    warehouse = source.filter(~pl.col("id").is_in(missing)).with_columns(
        pl.when(pl.col("id").is_in(stale))
        .then(pl.col("SystemModstamp") - pl.duration(hours=1))
        .otherwise(pl.col("SystemModstamp"))
        .alias("SystemModstamp"),
        pl.when(pl.col("id").is_in(stale) | pl.col("id").is_in(diverged))
        .then(pl.lit("Former title"))
        .otherwise(pl.col("Title"))
        .alias("Title"),
    )
    extra = source.head(per_class).with_columns(
        pl.format("003X{}", pl.int_range(per_class).cast(pl.String).str.zfill(14)).alias("id")
    )
    # the warehouse's own types: naive microsecond timestamps, 32-bit ints, shuffled rows
    warehouse = (
        pl.concat([warehouse, extra])
        .sample(fraction=1.0, shuffle=True, seed=9)
        .with_columns(
            pl.col("SystemModstamp").dt.replace_time_zone(None).dt.cast_time_unit("us")
            + pl.duration(microseconds=pl.col("NumberOfEmployees").fill_null(0) % 1000),
            pl.col("NumberOfEmployees").cast(pl.Int32),
        )
    )
    paths = {"source": f"{directory}/source.parquet", "warehouse": f"{directory}/warehouse.parquet"}
    source.write_parquet(paths["source"])
    warehouse.write_parquet(paths["warehouse"])
    seeded = [
        (x, cls)
        for cls, ids in (
            ("missing", missing),
            ("stale", stale),
            ("diverged", diverged),
            ("extra", extra["id"]),
        )
        for x in ids.to_list()
    ]
    return {"paths": paths, "seeded": _digest(seeded), "per_class": per_class}


# ---------------------------------------------------------------- phases
def hash_phase(paths: dict[str, str], directory: str) -> dict:
    import polars as pl

    from sync_platform.reconcile import content_hash

    frames = {side: pl.read_parquet(path) for side, path in paths.items()}
    loaded = _rss_mb()
    timing, hashes = timed(lambda: {side: content_hash(f, FIELDS) for side, f in frames.items()}, repeat=3)
    lean = {}
    for side, frame in frames.items():
        lean[side] = f"{directory}/{side}_lean.parquet"
        frame.select("id", pl.col("SystemModstamp").alias("cursor"), hashes[side]).write_parquet(lean[side])
    return {**timing, "rss_loaded_mb": loaded, "lean": lean, "rows": sum(f.height for f in frames.values())}


def classify_phase(lean: dict[str, str]) -> dict:
    import polars as pl

    from sync_platform.reconcile import CLASSES as DRIFT_CLASSES
    from sync_platform.reconcile import classify

    source, warehouse = pl.read_parquet(lean["source"]), pl.read_parquet(lean["warehouse"])
    loaded = _rss_mb()
    timing, diff = timed(lambda: classify(source, warehouse), repeat=5)
    drift = diff.differences.filter(pl.col("class").is_in(DRIFT_CLASSES))
    return {
        **timing,
        "rss_loaded_mb": loaded,
        "counts": diff.counts,
        "drift_share": diff.drift_share,
        "digest": _digest(drift.select("id", "class").rows()),
    }


def sql_phase(lean: dict[str, str]) -> dict:
    import duckdb
    import polars as pl

    from sync_platform.core.sql import ident, sql
    from sync_platform.reconcile.sql import bisect

    conn = duckdb.connect()
    for side, path in lean.items():
        conn.execute(sql("CREATE TABLE {side} AS SELECT * FROM read_parquet(?)", side=ident(side)), [path])
    loaded = _rss_mb()
    timing, (diff, stats) = timed(lambda: bisect(conn, "source", "warehouse"), repeat=3)
    drift = diff.differences.filter(pl.col("class") != "ahead")
    return {
        **timing,
        "rss_loaded_mb": loaded,
        "counts": diff.counts,
        "rounds": stats.rounds,
        "rows_fetched": stats.rows_fetched,
        "digest": _digest(drift.select("id", "class").rows()),
    }


def pandas_phase(lean: dict[str, str]) -> dict:
    import numpy as np
    import pandas as pd

    source, warehouse = pd.read_parquet(lean["source"]), pd.read_parquet(lean["warehouse"])
    warehouse["cursor"] = warehouse["cursor"].dt.tz_localize("UTC")
    loaded = _rss_mb()

    def naive():
        merged = source.merge(warehouse, on="id", how="outer", suffixes=("_s", "_w"), indicator=True)
        source_ms = merged["cursor_s"].dt.floor("ms")
        warehouse_ms = merged["cursor_w"].dt.floor("ms")
        merged["class"] = np.select(
            [
                merged["_merge"] == "left_only",
                merged["_merge"] == "right_only",
                source_ms > warehouse_ms,
                source_ms < warehouse_ms,
                merged["content_hash_s"] != merged["content_hash_w"],
            ],
            ["missing", "extra", "stale", "ahead", "diverged"],
            default="",
        )
        return merged.loc[merged["class"] != "", ["id", "class", "cursor_s", "cursor_w"]]

    timing, out = timed(naive, repeat=3)
    counts = out["class"].value_counts().to_dict()
    return {
        **timing,
        "rss_loaded_mb": loaded,
        "counts": {c: int(counts.get(c, 0)) for c in CLASSES},
        "digest": _digest(list(zip(out["id"], out["class"], strict=True))),
    }


# ---------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the pandas baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as tmp:
        started = time.perf_counter()
        # generation in a child too: Linux carries the forking parent's RSS into a child's ru_maxrss
        made = in_child(generate, args.records, tmp)
        print(
            f"input: {args.records:,} source x {args.records:,} warehouse records, {made['per_class']:,} per "
            f"class seeded ({DRIFT:.1%} drift), generated in {time.perf_counter() - started:.1f} s"
        )
        hashed = in_child(hash_phase, made["paths"], tmp)
        phases = [
            ("content_hash (both sides)", hashed),
            ("classify", in_child(classify_phase, hashed["lean"])),
            ("SQL bisection (DuckDB)", in_child(sql_phase, hashed["lean"])),
        ]
        if not args.no_baseline:
            phases.append(("pandas merge baseline", in_child(pandas_phase, hashed["lean"])))
    print(
        f"\n{'phase':<27} {'median s':>9} {'best s':>7} "
        f"{'peak RSS MB':>12} {'after loading input':>20}  found"
    )
    for name, r in phases:
        found = (
            ""
            if "digest" not in r
            else f"{'seeded ids' if r['digest'] == made['seeded'] else 'MISMATCH'} {r['counts']}"
        )
        print(
            f"{name:<27} {r['seconds']:>9.2f} {r['best']:>7.2f} {r['peak_rss_mb']:>12,.0f} "
            f"{r['rss_loaded_mb']:>20,.0f}  {found}"
        )
    results = dict(phases)
    classified = results["classify"]
    print(
        f"\nclassify: median {classified['seconds']:.2f} s (target <= 1.5 s), drift "
        f"{classified['drift_share']:.3%}; hashing {hashed['rows']:,} rows: "
        f"{hashed['rows'] / hashed['seconds']:,.0f} rows/s"
    )
    sql = results["SQL bisection (DuckDB)"]
    print(
        f"SQL bisection: {sql['rounds']} rounds, {sql['rows_fetched']:,} rows fetched out of "
        f"{hashed['rows']:,}"
    )
    if "pandas merge baseline" in results:
        pandas = results["pandas merge baseline"]
        print(
            f"pandas baseline / classify: median {pandas['seconds'] / classified['seconds']:.1f}x, best "
            f"{pandas['best'] / classified['best']:.1f}x (target >= 10x)"
        )


if __name__ == "__main__":
    main()
