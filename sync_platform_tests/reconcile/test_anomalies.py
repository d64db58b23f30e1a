"""Cursor anomalies: each is a named finding with a count and example ids, and quiet when all is well."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from sync_platform.reconcile import classify
from sync_platform.reconcile.anomalies import (
    CONTENT_CHANGED_CURSOR_UNCHANGED,
    CURSOR_IN_FUTURE,
    CURSOR_MOVED_BACKWARDS,
    IDENTICAL_CURSOR_SHARE,
    cursor_anomalies,
)
from sync_platform_tests.reconcile.conftest import BASE, seeded_pair

NOW = BASE + timedelta(days=1)


def test_a_clean_comparison_has_no_anomalies():
    source, _, _ = seeded_pair(n=500)
    assert cursor_anomalies(classify(source, source), source, NOW) == []


def test_diverged_and_ahead_records_become_named_findings(pair):
    source, warehouse, seeded = pair
    found = {a.name: a for a in cursor_anomalies(classify(source, warehouse), source, NOW)}
    assert set(found) == {CONTENT_CHANGED_CURSOR_UNCHANGED, CURSOR_MOVED_BACKWARDS}
    assert found[CONTENT_CHANGED_CURSOR_UNCHANGED].count == 6
    assert found[CONTENT_CHANGED_CURSOR_UNCHANGED].example_ids == sorted(seeded["diverged"])
    assert found[CURSOR_MOVED_BACKWARDS].example_ids == sorted(seeded["ahead"])
    assert "cursor" in found[CONTENT_CHANGED_CURSOR_UNCHANGED].detail


def test_examples_are_capped():
    source, warehouse, _ = seeded_pair(n=200, missing=0, extra=0, stale=0, diverged=25, ahead=0)
    (finding,) = cursor_anomalies(classify(source, warehouse), source, NOW, examples=10)
    assert finding.count == 25 and len(finding.example_ids) == 10


def test_cursor_in_the_future_beyond_the_tolerance():
    source, _, _ = seeded_pair(n=50)
    skewed = source.with_columns(
        pl.when(pl.col("id").is_in(["003000001", "003000002"]))
        .then(pl.lit(NOW + timedelta(hours=3)))
        .when(pl.col("id") == "003000003")
        .then(pl.lit(NOW + timedelta(minutes=2)))  # clock skew: tolerated
        .otherwise(pl.col("cursor"))
        .alias("cursor")
    )
    found = cursor_anomalies(classify(skewed, skewed), skewed, NOW)
    assert [(a.name, a.count, a.example_ids) for a in found] == [
        (CURSOR_IN_FUTURE, 2, ["003000001", "003000002"])
    ]
    assert cursor_anomalies(classify(skewed, skewed), skewed, NOW, future_tolerance=timedelta(hours=4)) == []
    naive_now = NOW.replace(tzinfo=None)
    assert [a.name for a in cursor_anomalies(classify(skewed, skewed), skewed, naive_now)] == [
        CURSOR_IN_FUTURE
    ]


def test_an_implausible_share_of_one_cursor_value():
    source, _, _ = seeded_pair(n=1000)
    stamped = source.with_columns(
        pl.when(pl.int_range(pl.len()) < 300).then(pl.lit(BASE)).otherwise(pl.col("cursor")).alias("cursor")
    )
    (finding,) = cursor_anomalies(classify(stamped, stamped), stamped, NOW)
    assert finding.name == IDENTICAL_CURSOR_SHARE and finding.count == 300
    assert finding.example_ids == [f"003{i:06d}" for i in range(10)]
    assert "30.0%" in finding.detail and BASE.isoformat() in finding.detail
    # below either threshold: quiet
    assert cursor_anomalies(classify(stamped, stamped), stamped, NOW, identical_share=0.5) == []
    assert cursor_anomalies(classify(stamped, stamped), stamped, NOW, identical_min_records=300) == []
    small = stamped.head(50)  # 100 % share, but too few records to mean anything
    assert cursor_anomalies(classify(small, small), small, NOW) == []
