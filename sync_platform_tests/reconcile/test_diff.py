"""classify and field_differences on seeded frames: every class, cursors, nulls, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from sync_platform.reconcile import CLASSES, classify, content_hash, field_differences
from sync_platform_tests.reconcile.conftest import BASE, seeded_pair


def test_each_class_is_found_with_its_ids(pair):
    source, warehouse, seeded = pair
    diff = classify(source, warehouse.sample(fraction=1.0, shuffle=True, seed=1))
    assert diff.counts == {"missing": 3, "extra": 4, "stale": 5, "diverged": 6}
    assert diff.ahead == 2 and diff.differing == 18
    assert diff.source_records == 1000 and diff.warehouse_records == 1001
    assert diff.drift_share == pytest.approx(18 / 1000)
    for cls, ids in seeded.items():
        assert diff.ids(cls) == sorted(ids), cls
    assert set(diff.ids()) == {i for cls in CLASSES for i in seeded[cls]}  # ahead is not drift
    assert diff.differences.columns == ["id", "class", "source_cursor", "warehouse_cursor"]
    assert diff.differences.schema["source_cursor"] == pl.Datetime("us", "UTC")
    extra = diff.differences.filter(pl.col("class") == "extra")
    assert extra["source_cursor"].null_count() == 4 and extra["warehouse_cursor"].null_count() == 0
    stale = diff.differences.filter(pl.col("class") == "stale").row(0, named=True)
    assert stale["source_cursor"] - stale["warehouse_cursor"] == timedelta(minutes=5)
    assert diff.sample_ids(per_class=2) == {cls: sorted(ids)[:2] for cls, ids in seeded.items()}


def test_identical_sides_have_no_drift_and_empty_source_does_not_divide_by_zero(pair):
    source, _, _ = pair
    clean = classify(source, source.clone())
    assert clean.differences.is_empty() and clean.drift_share == 0 and clean.differing == 0
    gone = classify(source.clear(), source)
    assert gone.counts["extra"] == 1000 and gone.source_records == 0 and gone.drift_share == 1000.0


def test_stale_wins_over_content_and_ahead_is_not_drift():
    source, warehouse, _ = seeded_pair(n=10, missing=0, extra=0, stale=1, diverged=0, ahead=1)
    diff = classify(source, warehouse)
    assert diff.counts == {"missing": 0, "extra": 0, "stale": 1, "diverged": 0} and diff.ahead == 1
    assert diff.drift_share == pytest.approx(0.1)


def test_cursor_precision_and_zone_differences_are_not_staleness():
    stamp = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    source = pl.DataFrame(
        {"id": ["a", "b"], "cursor": [stamp, stamp], "content_hash": pl.Series([1, 2], dtype=pl.UInt64)}
    ).with_columns(pl.col("cursor").cast(pl.Datetime("ms", "UTC")))
    # the warehouse kept microseconds, naive (UTC), and one row in another zone
    warehouse = pl.DataFrame(
        {
            "id": ["a", "b"],
            "cursor": [stamp.replace(tzinfo=None) + timedelta(microseconds=456), stamp.replace(tzinfo=None)],
            "content_hash": pl.Series([1, 3], dtype=pl.UInt64),
        }
    )
    diff = classify(source, warehouse)
    assert diff.counts == {"missing": 0, "extra": 0, "stale": 0, "diverged": 1}
    berlin = warehouse.with_columns(
        pl.col("cursor").dt.replace_time_zone("UTC").dt.convert_time_zone("Europe/Berlin")
    )
    assert classify(source, berlin).counts == diff.counts


def test_null_cursors_count_as_oldest():
    source = pl.DataFrame(
        {
            "id": ["a", "b", "c"],
            "cursor": [BASE, None, None],
            "content_hash": pl.Series([1, 2, 3], dtype=pl.UInt64),
        }
    )
    warehouse = pl.DataFrame(
        {
            "id": ["a", "b", "c"],
            "cursor": [None, BASE, None],
            "content_hash": pl.Series([1, 2, 4], dtype=pl.UInt64),
        }
    )
    diff = classify(source, warehouse)
    assert dict(diff.differences.select("id", "class").iter_rows()) == {
        "a": "stale",
        "b": "ahead",
        "c": "diverged",
    }


def test_a_record_listed_twice_counts_once_with_its_newest_cursor():
    source = pl.DataFrame(
        {
            "id": ["a", "a", "b"],
            "cursor": [BASE, BASE + timedelta(seconds=9), BASE],
            "content_hash": pl.Series([1, 2, 3], dtype=pl.UInt64),
        }
    )
    warehouse = pl.DataFrame(
        {"id": ["a", "b"], "cursor": [BASE, BASE], "content_hash": pl.Series([1, 3], dtype=pl.UInt64)}
    )
    diff = classify(source, warehouse)
    assert diff.source_records == 2
    assert diff.differences.select("id", "class").rows() == [("a", "stale")]


def test_only_id_cursor_and_hash_are_needed_and_checked(pair):
    source, warehouse, _ = pair
    wide = source.with_columns(pl.lit("secret@example.com").alias("email"))
    assert classify(wide, warehouse).counts == classify(source, warehouse).counts
    with pytest.raises(KeyError):
        classify(source.drop("content_hash"), warehouse)
    with pytest.raises(TypeError):
        classify(source.with_columns(pl.col("cursor").cast(pl.String)), warehouse)


def test_hashing_then_classifying_finds_the_frozen_timestamp_edit():
    """The incident: content changed, cursor did not."""
    rows = pl.DataFrame(
        {
            "Id": ["a", "b"],
            "Email": ["a@example.com", "b@example.com"],
            "Title": ["x", None],
            "SystemModstamp": [BASE, BASE],
        }
    )
    edited = rows.with_columns(
        pl.when(pl.col("Id") == "b").then(pl.lit("CEO")).otherwise("Title").alias("Title")
    )

    def lean(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(
            pl.col("Id").alias("id"),
            pl.col("SystemModstamp").alias("cursor"),
            content_hash(frame, ["Email", "Title"]),
        )

    diff = classify(lean(edited), lean(rows))
    assert diff.differences.select("id", "class").rows() == [("b", "diverged")]


def test_field_differences_names_the_fields_that_differ():
    source = pl.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "Email": ["a@x", "b@x", "c@x", None],
            "Title": ["x", "y", None, "z"],
            "Modified": [BASE] * 4,
        }
    )
    warehouse = pl.DataFrame(
        {
            "id": ["d", "c", "b", "e"],
            "email": [None, "c@y", "b@y", "e@x"],
            "title": ["z", "", "y", "q"],
            "modified": [BASE.replace(tzinfo=None) + timedelta(microseconds=10)] * 4,
        }
    )
    out = field_differences(source, warehouse, {"Email": "email", "Title": "title", "Modified": "modified"})
    # b, c, d are on both sides: Email differs for b and c; Title for c (null vs empty); Modified nowhere
    assert out.rows() == [("Email", 2), ("Title", 1)]
    same_names = warehouse.rename({"email": "Email", "title": "Title", "modified": "Modified"})
    assert field_differences(source, same_names, ["Email", "Title", "Modified"]).rows() == out.rows()
    assert field_differences(source.clear(), warehouse, {"Email": "email"}).is_empty()


def _reference(source: pl.DataFrame, warehouse: pl.DataFrame) -> list[tuple[str, str]]:
    """The obvious full join, row by row in Python: what classify must agree with."""

    def newest(frame: pl.DataFrame) -> dict[str, tuple]:
        best: dict[str, tuple] = {}
        for i, c, h in frame.select("id", pl.col("cursor").dt.epoch("ms"), "content_hash").iter_rows():
            if i not in best or (c if c is not None else -1e18) >= (
                best[i][0] if best[i][0] is not None else -1e18
            ):
                best[i] = (c, h)
        return best

    s, w = newest(source), newest(warehouse)
    out = []
    for i in s.keys() | w.keys():
        if i not in w:
            out.append((i, "missing"))
        elif i not in s:
            out.append((i, "extra"))
        else:
            (sc, sh), (wc, wh) = s[i], w[i]
            sc, wc = (-1e18 if sc is None else sc), (-1e18 if wc is None else wc)
            cls = "stale" if sc > wc else "ahead" if sc < wc else "diverged" if sh != wh else None
            if cls:
                out.append((i, cls))
    return sorted(out)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_drift_agrees_with_a_plain_reference(seed):
    """Bucket checksums set agreeing rows aside: random drift of every kind must still be found exactly."""
    import random

    rng = random.Random(seed)
    n = 30_000
    source = pl.DataFrame(
        {
            "id": [f"id{i}" for i in range(n)],
            "cursor": [BASE + timedelta(milliseconds=rng.randrange(10**9)) for _ in range(n)],
            "content_hash": pl.Series([rng.getrandbits(63) for _ in range(n)], dtype=pl.UInt64),
        }
    )
    rows = source.rows()
    warehouse_rows = []
    for i, c, h in rows:
        roll = rng.random()
        if roll < 0.01:
            continue  # missing
        if roll < 0.02:
            c = c - timedelta(seconds=1)  # stale
        elif roll < 0.03:
            h = h ^ 1  # diverged
        elif roll < 0.035:
            c = c + timedelta(seconds=1)  # ahead
        elif roll < 0.037:
            c = None
        warehouse_rows.append((i, c, h))
    warehouse_rows += [(f"gone{k}", BASE, k) for k in range(200)]  # extra
    warehouse = pl.DataFrame(warehouse_rows, schema=source.schema, orient="row")
    source = pl.concat(
        [source, source.sample(50, seed=seed).with_columns(pl.col("cursor") - timedelta(hours=1))]
    )
    diff = classify(source, warehouse.sample(fraction=1.0, shuffle=True, seed=seed))
    assert diff.differences.select("id", "class").rows() == _reference(source, warehouse)
    assert diff.source_records == n and diff.warehouse_records == warehouse.height
