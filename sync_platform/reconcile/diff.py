"""Classify every difference between a CRM listing and the warehouse, and measure drift.

Both sides are reduced to (id, cursor, content_hash) before they meet, so memory grows with the
number of records, not with their width. Cursors are compared at millisecond precision in UTC
(a naive cursor is UTC): a listing parsed from ``...123Z`` and a warehouse round trip that kept
microseconds must not look stale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from sync_platform.reconcile.hashing import HASH_COLUMN, canonical_values

CLASSES = ("missing", "extra", "stale", "diverged")
AHEAD = "ahead"  # warehouse cursor newer than the source's: the cursor moved backwards at the source
ALL_CLASSES = (*CLASSES, AHEAD)
ID, CURSOR = "id", "cursor"
CURSOR_TYPE = pl.Datetime("us", "UTC")
_NO_CURSOR = -(2**62)  # a null cursor sorts before every real one
_SEED = 0x5EC0


@dataclass
class Diff:
    """The outcome of one comparison.

    ``differences``: one row per differing id (id, class, source_cursor, warehouse_cursor), class in
    ``ALL_CLASSES``. ``counts`` holds the four drift classes; ``ahead`` is reported apart because a
    backwards cursor is an anomaly of the source, not drift of the warehouse.
    """

    differences: pl.DataFrame
    source_records: int
    warehouse_records: int
    counts: dict[str, int]
    drift_share: float
    ahead: int = 0

    @property
    def differing(self) -> int:
        return sum(self.counts.values())

    def ids(self, *classes: str) -> list[str]:
        """Differing ids of ``classes`` (all four drift classes when none are given), sorted."""
        wanted = classes or CLASSES
        return sorted(self.differences.filter(pl.col("class").is_in(wanted))[ID].to_list())

    def sample_ids(self, per_class: int = 10) -> dict[str, list[str]]:
        """Up to ``per_class`` ids of each class present (smallest ids, so a report is reproducible)."""
        out: dict[str, list[str]] = {}
        for cls in ALL_CLASSES:
            ids = self.differences.filter(pl.col("class") == cls)[ID].sort().head(per_class).to_list()
            if ids:
                out[cls] = ids
        return out


def _cursor_ms(frame: pl.DataFrame) -> pl.Expr:
    dtype = frame.schema[CURSOR]
    if isinstance(dtype, pl.Datetime):
        return pl.col(CURSOR).dt.epoch("ms")
    if dtype == pl.Null:
        return pl.col(CURSOR).cast(pl.Int64)
    raise TypeError(f"the cursor must be a datetime column, got {dtype}")


def _lean(frame: pl.DataFrame, side: str) -> pl.DataFrame:
    """(id, ms, hash, key, digest): ``key`` hashes the id (its bucket), ``digest`` the whole triple."""
    missing = {ID, CURSOR, HASH_COLUMN} - set(frame.columns)
    if missing:
        raise KeyError(f"the {side} frame lacks {sorted(missing)}")
    lean = frame.select(
        pl.col(ID).cast(pl.String),
        _cursor_ms(frame).cast(pl.Int64).alias("ms"),
        pl.col(HASH_COLUMN).cast(pl.UInt64).alias("hash"),
    )
    return lean.with_columns(lean[ID].hash(_SEED).alias("key"), lean.hash_rows(seed=_SEED).alias("digest"))


def _newest_per_id(rows: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """One row per id, the newest cursor winning (a listing paged while records changed can list one
    twice), and how many rows that dropped."""
    ids = rows[ID].n_unique()
    if ids == rows.height:
        return rows, 0
    return rows.sort("ms", nulls_last=False).unique(ID, keep="last"), rows.height - ids


def _in_differing_buckets(s: pl.DataFrame, w: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows of both sides whose bucket (id hash modulo ~n/4) has another row count or digest sum.

    The in-process twin of ``sql.bisect``'s first round: per-bucket counts and (mod 2**64) digest
    sums with numpy touch each row once and build no hash table, so agreeing rows cost almost
    nothing and only the rows of differing buckets reach the join.
    """
    buckets = 1 << max(10, (max(s.height, w.height) // 4).bit_length())

    def sums(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bucket = (frame["key"] & (buckets - 1)).cast(pl.Int64).to_numpy()
        total = np.zeros(buckets, dtype=np.uint64)
        np.add.at(total, bucket, frame["digest"].to_numpy())  # wraps modulo 2**64
        return bucket, np.bincount(bucket, minlength=buckets), total

    (s_bucket, s_count, s_sum), (w_bucket, w_count, w_sum) = sums(s), sums(w)
    differ = (s_count != w_count) | (s_sum != w_sum)
    return s.filter(pl.Series(differ[s_bucket])), w.filter(pl.Series(differ[w_bucket]))


def classify(source: pl.DataFrame, warehouse: pl.DataFrame) -> Diff:
    """Compare the live records at the CRM (``source``) with the live rows of the warehouse.

    Both frames have id (String), cursor (Datetime) and content_hash (UInt64). missing: live at the
    source, absent (or soft-deleted) in the warehouse; extra: in the warehouse, gone at the source;
    stale: warehouse cursor older; diverged: same cursor, other content (the frozen-timestamp
    signature); ahead: warehouse cursor newer. A null cursor counts as older than any other. An id
    listed twice counts once, its newest cursor winning.

    Agreeing rows are set aside first by bucket checksums over 64-bit digests of (id, cursor, hash)
    (in-process only, so polars' version-dependent hash is fine); only the rows of differing
    buckets are joined on their ids. A checksum collision could hide a difference with odds of
    about 2**-64 per differing bucket.
    """
    s, w = _lean(source, "source"), _lean(warehouse, "warehouse")
    s_rows, w_rows = _in_differing_buckets(s, w)
    # a repeated id makes its side's multiset differ, so its bucket differs and its rows are here;
    # only an id repeated identically on both sides would agree and count twice, and the warehouse
    # side (a raw table merged on the id) never repeats one
    (s_only, s_repeats), (w_only, w_repeats) = _newest_per_id(s_rows), _newest_per_id(w_rows)
    source_records, warehouse_records = s.height - s_repeats, w.height - w_repeats
    s_only, w_only = s_only.drop("key", "digest"), w_only.drop("key", "digest")
    s_ms, w_ms = pl.col("source_ms").fill_null(_NO_CURSOR), pl.col("warehouse_ms").fill_null(_NO_CURSOR)
    klass = (
        pl.when(pl.col("warehouse").is_null())
        .then(pl.lit("missing"))
        .when(pl.col("source").is_null())
        .then(pl.lit("extra"))
        .when(s_ms > w_ms)
        .then(pl.lit("stale"))
        .when(s_ms < w_ms)
        .then(pl.lit(AHEAD))
        .when(pl.col("source_hash").ne_missing(pl.col("warehouse_hash")))
        .then(pl.lit("diverged"))
        .otherwise(pl.lit(None, pl.String))
    )
    differences = (
        s_only.rename({"ms": "source_ms", "hash": "source_hash"})
        .with_columns(pl.lit(True).alias("source"))
        .join(
            w_only.rename({"ms": "warehouse_ms", "hash": "warehouse_hash"}).with_columns(
                pl.lit(True).alias("warehouse")
            ),
            on=ID,
            how="full",
            coalesce=True,
        )
        .select(
            ID,
            klass.alias("class"),
            pl.from_epoch("source_ms", "ms")
            .dt.replace_time_zone("UTC")
            .cast(CURSOR_TYPE)
            .alias("source_cursor"),
            pl.from_epoch("warehouse_ms", "ms")
            .dt.replace_time_zone("UTC")
            .cast(CURSOR_TYPE)
            .alias("warehouse_cursor"),
        )
        .filter(pl.col("class").is_not_null())
        .sort(ID)
    )
    tally = dict(differences.group_by("class").len().iter_rows())
    counts = {cls: int(tally.get(cls, 0)) for cls in CLASSES}
    return Diff(
        differences=differences,
        source_records=source_records,
        warehouse_records=warehouse_records,
        counts=counts,
        drift_share=sum(counts.values()) / max(source_records, 1),
        ahead=int(tally.get(AHEAD, 0)),
    )


def field_differences(
    source_rows: pl.DataFrame, warehouse_rows: pl.DataFrame, fields: Sequence[str] | Mapping[str, str]
) -> pl.DataFrame:
    """Which fields differ, and in how many of the rows both sides hold: (field, differing), worst first.

    ``source_rows`` and ``warehouse_rows`` carry ``id`` and the fields for a sample of differing
    ids. ``fields`` is a list of names both sides share, or a mapping source name -> warehouse
    name (reported by the source name). Values are compared in their canonical form, so a
    precision or zone difference is not a difference; the values themselves never leave.
    """
    pairs = dict(fields) if isinstance(fields, Mapping) else {f: f for f in fields}
    empty = pl.DataFrame(schema={"field": pl.String, "differing": pl.UInt32})
    if not pairs or source_rows.is_empty() or warehouse_rows.is_empty():
        return empty
    names = list(pairs)
    left = canonical_values(source_rows, names).with_columns(source_rows[ID].cast(pl.String).alias(ID))
    right = (
        canonical_values(warehouse_rows, list(pairs.values()))
        .rename(dict(zip(pairs.values(), names, strict=True)))
        .with_columns(warehouse_rows[ID].cast(pl.String).alias(ID))
    )
    both = left.unique(ID).join(right.unique(ID), on=ID, how="inner", suffix="__w")
    if both.is_empty():
        return empty
    tally = both.select([pl.col(n).ne_missing(pl.col(f"{n}__w")).sum().alias(n) for n in names])
    return (
        tally.unpivot(variable_name="field", value_name="differing")
        .with_columns(pl.col("differing").cast(pl.UInt32))
        .filter(pl.col("differing") > 0)
        .sort(["differing", "field"], descending=[True, False])
    )
