"""The field-level change summary of a canonical rebuild: counts, per-column changes, hashed PII."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from sync_platform.canonical.changes import pii_columns, summarize_changes
from sync_platform.security.redaction import HASH_PATTERN, pii_hash

T0, T1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)


def contacts(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        orient="row",
        schema={
            "source_system": pl.String,
            "source_id": pl.String,
            "email": pl.String,
            "title": pl.String,
            "deleted_at": pl.Datetime("us", "UTC"),
            "_dlt_load_id": pl.String,
        },
    )


PREVIOUS = contacts(
    [
        ("salesforce", "a", "ann@example.com", "CEO", None, "1"),
        ("salesforce", "b", "bob@example.com", "CTO", None, "1"),
        ("hubspot", "c", "cy@example.com", None, None, "1"),
        ("hubspot", "d", "dee@example.com", "VP", None, "1"),
        ("hubspot", "e", "eve@example.com", "VP", None, "1"),
        ("dynamics", "f", "fay@example.com", "VP", None, "1"),
    ]
)


def test_inserts_updates_deletes_and_changed_fields_are_counted_per_column():
    current = contacts(
        [
            ("salesforce", "a", "ann@example.com", "Chair", None, "2"),  # title changed
            ("salesforce", "b", "robert@example.com", "CTO", None, "2"),  # email changed
            ("hubspot", "c", "cy@example.com", "Founder", None, "2"),  # null -> value is a change
            ("hubspot", "d", "dee@example.com", "VP", T1, "2"),  # soft-deleted
            ("dynamics", "f", "fay@example.com", "VP", None, "2"),  # unchanged (load id ignored)
            ("dynamics", "g", "gus@example.com", "VP", None, "2"),  # new
        ]
    )  # e: gone (hard delete)
    summary = summarize_changes(PREVIOUS, current)
    assert (summary.inserted, summary.updated, summary.deleted, summary.unchanged) == (1, 3, 2, 1)
    assert summary.changed_fields == {"title": 2, "email": 1}
    assert summary.by_source == {
        "dynamics": {"inserted": 1},
        "hubspot": {"deleted": 2, "updated": 1},
        "salesforce": {"updated": 2},
    }


def test_pii_columns_are_hashed_in_samples_and_others_shown():
    current = PREVIOUS.with_columns(
        pl.when(pl.col("source_id") == "b")
        .then(pl.lit("robert@example.com"))
        .otherwise("email")
        .alias("email"),
        pl.when(pl.col("source_id") == "a").then(pl.lit("Chair")).otherwise("title").alias("title"),
    )
    summary = summarize_changes(PREVIOUS, current, pii=pii_columns("contact"))
    [email] = summary.samples["email"]
    assert email["source_id"] == "b"
    assert email["old"] == pii_hash("bob@example.com") and email["new"] == pii_hash("robert@example.com")
    assert HASH_PATTERN.match(email["new"]) and "example" not in str(summary.details())
    assert summary.samples["title"] == [
        {"source_system": "salesforce", "source_id": "a", "old": "CEO", "new": "Chair"}
    ]


def test_rows_held_back_by_the_quality_gate_are_quarantined_not_deleted():
    current = PREVIOUS.filter(pl.col("source_id") != "a")
    rejected = pl.DataFrame({"source_system": ["salesforce"], "source_id": ["a"]})
    summary = summarize_changes(PREVIOUS, current, rejected=rejected)
    assert (summary.deleted, summary.quarantined, summary.updated) == (0, 1, 0)


def test_no_previous_table_means_everything_is_inserted():
    summary = summarize_changes(None, PREVIOUS)
    assert summary.inserted == 6 and summary.changed_fields == {}
    assert summary.by_source["hubspot"] == {"inserted": 3}


def test_types_read_back_from_the_warehouse_are_aligned_before_comparing():
    """The previous table comes from DuckDB/PostgreSQL: another time zone or a looser type is no change."""
    previous = PREVIOUS.with_columns(pl.col("deleted_at").dt.convert_time_zone("Europe/Paris"))
    assert summarize_changes(previous, PREVIOUS).unchanged == 6
    new_column = PREVIOUS.with_columns(pl.lit("x").alias("phone"))
    summary = summarize_changes(PREVIOUS, new_column)
    assert summary.unchanged == 6 and summary.columns_added == ("phone",)


def test_a_new_raw_load_alone_is_not_a_change() -> None:
    """A look-back re-read rewrites the raw row under a new load id: lineage, not content."""
    previous = PREVIOUS.with_columns(pl.lit("1").alias("source_load_id"))
    current = PREVIOUS.with_columns(pl.lit("2").alias("source_load_id"))
    summary = summarize_changes(previous, current)
    assert (summary.updated, summary.unchanged, summary.changed_fields) == (0, 6, {})
