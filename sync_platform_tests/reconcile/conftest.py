"""Seeded listing/warehouse pairs with a known number of differences of each class."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

BASE = datetime(2025, 3, 1, 12, tzinfo=UTC)


def seeded_pair(
    n: int = 1000, missing: int = 3, extra: int = 4, stale: int = 5, diverged: int = 6, ahead: int = 2
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, list[str]]]:
    """(source, warehouse, ids by class): records 0..n-1 agree except the seeded ones."""
    ids = [f"003{i:06d}" for i in range(n)]
    source = pl.DataFrame(
        {
            "id": ids,
            "cursor": [BASE + timedelta(seconds=i) for i in range(n)],
            "content_hash": pl.Series([1_000_003 * i + 7 for i in range(n)], dtype=pl.UInt64),
        }
    )
    cut = iter(range(n))
    take = {
        cls: [ids[next(cut)] for _ in range(k)]
        for cls, k in (("missing", missing), ("stale", stale), ("diverged", diverged), ("ahead", ahead))
    }
    warehouse = source.filter(~pl.col("id").is_in(take["missing"])).with_columns(
        pl.when(pl.col("id").is_in(take["stale"]))
        .then(pl.col("cursor") - timedelta(minutes=5))
        .when(pl.col("id").is_in(take["ahead"]))
        .then(pl.col("cursor") + timedelta(minutes=5))
        .otherwise(pl.col("cursor"))
        .alias("cursor"),
        pl.when(pl.col("id").is_in(take["diverged"] + take["stale"]))
        .then(pl.col("content_hash") + 1)
        .otherwise(pl.col("content_hash"))
        .alias("content_hash"),
    )
    take["extra"] = [f"003x{i:05d}" for i in range(extra)]
    warehouse = pl.concat(
        [
            warehouse,
            pl.DataFrame(
                {
                    "id": take["extra"],
                    "cursor": [BASE] * extra,
                    "content_hash": pl.Series([99] * extra, dtype=pl.UInt64),
                }
            ),
        ]
    )
    return source, warehouse, take


@pytest.fixture
def pair() -> tuple[pl.DataFrame, pl.DataFrame, dict[str, list[str]]]:
    return seeded_pair()
