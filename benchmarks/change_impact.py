"""Change-impact gate figures: its cost against the change summary every canonical build already pays.

    .venv/bin/python benchmarks/change_impact.py [--rows-per-crm 1000000]

Both compare the same pair of canonical contact tables (three CRMs, ``--rows-per-crm`` each): the
published one and a build where 1 % of the rows were edited in their CRM (new raw load) and one
CRM's ``lifecycle_stage`` was rewritten by a value map (the incident the gate exists for). The
change summary (``canonical.changes.summarize_changes``) is the baseline; the goal is the gate
(``canonical.impact.measure_impact``) at most 1.5x of it. Each phase runs five times in its own
process (median and best printed; the first, cold run included) so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import in_child, timed

CRMS = ("salesforce", "hubspot", "dynamics")
STAGES = ("lead", "prospect", "customer", "churned", "other")


def generate(rows_per_crm: int, directory: str) -> dict:
    """The published table and the new build, as Parquet (built in a child: the parent stays small)."""
    from datetime import UTC, datetime

    import polars as pl

    from sync_platform.canonical.model import ENTITIES

    frames = []
    for crm in CRMS:
        i = pl.int_range(0, rows_per_crm, eager=True)
        frames.append(
            pl.DataFrame({"i": i}).select(
                pl.lit(crm).alias("source_system"),
                pl.col("i").cast(pl.String).alias("source_id"),
                pl.format("person{}@example{}.com", "i", pl.col("i") % 997).alias("email"),
                pl.format("First{}", pl.col("i") % 5000).alias("first_name"),
                pl.format("Last{}", pl.col("i") % 20000).alias("last_name"),
                pl.when(pl.col("i") % 7 == 0)
                .then(None)
                .otherwise(pl.format("+1415{}", (pl.col("i") % 10_000_000).cast(pl.String).str.zfill(7)))
                .alias("phone"),
                pl.format("Title {}", pl.col("i") % 300).alias("title"),
                (pl.col("i") // 5).cast(pl.String).alias("account_source_id"),
                (pl.col("i") % len(STAGES)).replace_strict(dict(enumerate(STAGES))).alias("lifecycle_stage"),
                (pl.col("i") % 11 == 0).alias("email_opt_out"),
                pl.lit(datetime(2025, 1, 1, tzinfo=UTC)).alias("created_at"),
                pl.lit(datetime(2026, 1, 1, tzinfo=UTC)).alias("updated_at"),
                pl.lit(None, pl.Datetime("us", "UTC")).alias("deleted_at"),
                pl.lit(1, pl.Int64).alias("mapping_version"),
                pl.format("17000000{}.5", pl.col("i") % 200).alias("source_load_id"),
            )
        )
    previous = pl.concat(frames).cast(ENTITIES["contact"].schema)  # type: ignore[arg-type]
    edited = pl.int_range(0, previous.height, eager=True) % 100 == 0
    current = previous.with_columns(
        pl.when(pl.Series(edited)).then(pl.lit("VP Sales")).otherwise(pl.col("title")).alias("title"),
        pl.when(pl.Series(edited))
        .then(pl.lit("1800000000.1"))
        .otherwise(pl.col("source_load_id"))
        .alias("source_load_id"),
        pl.when((pl.col("source_system") == "hubspot") & (pl.col("lifecycle_stage") == "customer"))
        .then(pl.lit("churned"))
        .otherwise(pl.col("lifecycle_stage"))
        .alias("lifecycle_stage"),
    )
    paths = {"previous": f"{directory}/previous.parquet", "current": f"{directory}/current.parquet"}
    previous.write_parquet(paths["previous"])
    current.write_parquet(paths["current"])
    return {"paths": paths, "rows": previous.height}


def change_summary(paths: dict) -> dict:
    import polars as pl

    from sync_platform.canonical.changes import pii_columns, summarize_changes

    previous, current = pl.read_parquet(paths["previous"]), pl.read_parquet(paths["current"])
    pii = pii_columns("contact")
    timing, summary = timed(lambda: summarize_changes(previous, current, pii=pii))
    return {**timing, "updated": summary.updated, "changed_fields": summary.changed_fields}


def impact_gate(paths: dict) -> dict:
    import polars as pl

    from sync_platform.canonical.changes import pii_columns
    from sync_platform.canonical.impact import measure_impact
    from sync_platform.core.config import ChangeImpactConfig

    previous, current = pl.read_parquet(paths["previous"]), pl.read_parquet(paths["current"])
    pii, limits = pii_columns("contact"), ChangeImpactConfig()
    timing, report = timed(lambda: measure_impact("contact", previous, current, limits, pii))
    return {**timing, "breaches": sorted({(b.crm, b.field, b.metric) for b in report.breaches})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows-per-crm", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="impact-bench-") as tmp:
        started = time.perf_counter()
        made = in_child(generate, args.rows_per_crm, str(Path(tmp)))
        print(
            f"input: {made['rows']:,} canonical contacts ({args.rows_per_crm:,} per CRM, 15 columns), "
            f"1 % edited in the CRM, HubSpot customers rewritten by a value map; built in "
            f"{time.perf_counter() - started:.1f} s"
        )
        base = in_child(change_summary, made["paths"])
        gate = in_child(impact_gate, made["paths"])
    rows = made["rows"]
    print(f"\n{'phase':<34} {'median s':>9} {'best s':>7} {'rows/s':>12} {'peak RSS MB':>12}")
    for name, r in (("change summary (baseline)", base), ("change-impact gate", gate)):
        print(
            f"{name:<34} {r['seconds']:>9.2f} {r['best']:>7.2f} {rows / r['seconds']:>12,.0f} "
            f"{r['peak_rss_mb']:>12,.0f}"
        )
    ratio, best = gate["seconds"] / base["seconds"], gate["best"] / base["best"]
    print(f"\ngate / change summary: {ratio:.2f}x median, {best:.2f}x best (goal <= 1.5x)")
    print(f"breaches found: {gate['breaches']}")
    print(f"rows updated per the change summary: {base['updated']:,}; per field: {base['changed_fields']}")


if __name__ == "__main__":
    main()
