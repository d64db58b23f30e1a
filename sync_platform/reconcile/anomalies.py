"""Cursor anomalies: the ways an incremental sync's cursor can lie, each a named finding with example ids.

The incident behind the project was a cursor that stopped moving while content changed; a sync
that trusts it reports success with zero changes. These findings make such a cursor visible from
one reconciliation: the diff's diverged and ahead records, plus two checks of the listing itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from sync_platform.reconcile.diff import AHEAD, CURSOR, ID, Diff

CONTENT_CHANGED_CURSOR_UNCHANGED = "content_changed_cursor_unchanged"
CURSOR_MOVED_BACKWARDS = "cursor_moved_backwards"
CURSOR_IN_FUTURE = "cursor_in_future"
IDENTICAL_CURSOR_SHARE = "identical_cursor_share"
ANOMALIES = (
    CONTENT_CHANGED_CURSOR_UNCHANGED,
    CURSOR_MOVED_BACKWARDS,
    CURSOR_IN_FUTURE,
    IDENTICAL_CURSOR_SHARE,
)


@dataclass(frozen=True)
class Anomaly:
    """One named finding: how many records, up to ``examples`` of their ids, one line for a human."""

    name: str
    count: int
    example_ids: list[str] = field(default_factory=list)
    detail: str = ""


def _examples(ids: pl.Series, limit: int) -> list[str]:
    return ids.cast(pl.String).sort().head(limit).to_list()


def cursor_anomalies(
    diff: Diff,
    source: pl.DataFrame,
    now: datetime,
    *,
    future_tolerance: timedelta = timedelta(minutes=5),
    identical_share: float = 0.2,
    identical_min_records: int = 100,
    examples: int = 10,
) -> list[Anomaly]:
    """The cursor anomalies of one comparison, in ``ANOMALIES`` order, only those that occur.

    ``source`` is the listing (id, cursor) the diff came from; ``now`` the check's time (naive =
    UTC). A cursor later than ``now + future_tolerance`` is in the future (clock skew below the
    tolerance is not). One cursor value shared by more than ``identical_share`` of the live records
    and by more than ``identical_min_records`` of them is implausible: a bulk script stamped them.
    """
    found: list[Anomaly] = []
    changes = diff.differences
    diverged = changes.filter(pl.col("class") == "diverged")
    if diverged.height:
        found.append(
            Anomaly(
                CONTENT_CHANGED_CURSOR_UNCHANGED,
                diverged.height,
                _examples(diverged[ID], examples),
                f"{diverged.height} records changed content while their cursor stayed the same",
            )
        )
    ahead = changes.filter(pl.col("class") == AHEAD)
    if ahead.height:
        found.append(
            Anomaly(
                CURSOR_MOVED_BACKWARDS,
                ahead.height,
                _examples(ahead[ID], examples),
                f"{ahead.height} records have an older cursor at the source than in the warehouse",
            )
        )
    if source.height == 0:
        return found
    now_utc = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    cursor_ms = pl.col(CURSOR).dt.epoch("ms")
    limit_ms = int((now_utc + future_tolerance).timestamp() * 1000)
    future = source.filter(cursor_ms > limit_ms)
    if future.height:
        latest = future[CURSOR].max()
        found.append(
            Anomaly(
                CURSOR_IN_FUTURE,
                future.height,
                _examples(future[ID], examples),
                f"{future.height} records have a cursor later than now + {future_tolerance} "
                f"(latest {_iso(latest)})",
            )
        )
    live = source.select(ID, cursor_ms.alias("ms")).drop_nulls("ms").unique(ID)
    if live.height:
        top = live.group_by("ms").len().sort(["len", "ms"], descending=[True, False]).row(0, named=True)
        share = top["len"] / live.height
        if top["len"] > identical_min_records and share > identical_share:
            ids = live.filter(pl.col("ms") == top["ms"])[ID]
            stamp = datetime.fromtimestamp(top["ms"] / 1000, UTC)
            found.append(
                Anomaly(
                    IDENTICAL_CURSOR_SHARE,
                    top["len"],
                    _examples(ids, examples),
                    f"{top['len']} of {live.height} live records ({share:.1%}) share the cursor "
                    f"{_iso(stamp)}",
                )
            )
    return found


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
