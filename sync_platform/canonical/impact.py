"""The change-impact gate: a canonical build may not silently rewrite what the raw data did not change.

The pandera gate judges each row alone, so it passes a value that is valid but wrong (a value map
sending one picklist value to another valid stage) and a field a normalizer turned into null (a
mapping reading ``phone`` from the wrong column). This gate compares the build with the table
published before it, per CRM, entity and field:

- **config-made changes**: among rows in both builds whose raw row is the same load
  (``source_load_id`` unchanged: the CRM did not touch them), the share whose value changed. Only
  the configuration (mapping, normalizers, code) can have changed those values;
- **null rate**: how much the share of nulls rose among the CRM's live rows;
- **distribution shift** of a categorical field (enum or boolean): the population stability
  index ``sum((after - before) * ln(after / before))`` over its values, null included, and the
  largest share moved between two values;
- **row loss**: the share of the CRM's live rows gone since the last build (a CRM that vanished
  loses all of them).

Limits come from ``quality.change_impact`` in ``sync.yaml``, overridable per CRM, entity and field;
a CRM with fewer than ``min_rows`` rows in the last build is measured but not judged. The
computation is columnar: two group-bys and one join on the key, whatever the number of fields.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from sync_platform.canonical.model import ENTITIES, Field
from sync_platform.core.config import ChangeImpactConfig
from sync_platform.security.redaction import pii_hash

KEY = ("source_system", "source_id")
LOAD = "source_load_id"
CONFIG_CHANGED, NULL_RATE, SHIFT, ROW_LOSS = (
    "max_config_changed_share",
    "max_null_rate_increase",
    "max_distribution_shift",
    "max_row_loss_share",
)
IMPACT_ALERT = "canonical_change_impact_exceeded"
_EPSILON = 1e-4  # a value absent on one side still counts, as a share this small
_EXAMPLES = 3


@dataclass(frozen=True)
class FieldImpact:
    """One CRM's field, this build against the last published one."""

    crm: str
    field: str
    compared: int  # rows in both builds whose raw row did not change
    config_changed: int  # of those, rows whose value changed
    null_before: float
    null_after: float
    psi: float | None = None  # categorical fields only
    largest_move: float | None = None
    before: dict[str, float] = field(default_factory=dict)  # value -> share (categorical; PII hashed)
    after: dict[str, float] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config_changed_share(self) -> float:
        return self.config_changed / self.compared if self.compared else 0.0

    @property
    def null_rate_increase(self) -> float:
        return self.null_after - self.null_before


@dataclass(frozen=True)
class Breach:
    """One limit exceeded: what the alert names."""

    crm: str
    entity: str
    field: str | None
    metric: str
    value: float
    limit: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "crm": self.crm,
            "entity": self.entity,
            "field": self.field,
            "metric": self.metric,
            "value": round(self.value, 5),
            "limit": self.limit,
            "message": self.message,
            **self.details,
        }


@dataclass
class ImpactReport:
    """Everything the gate measured for one entity, and the limits it found exceeded."""

    entity: str
    rows_before: dict[str, int] = field(default_factory=dict)  # live rows per CRM
    rows_after: dict[str, int] = field(default_factory=dict)
    fields: list[FieldImpact] = field(default_factory=list)
    breaches: list[Breach] = field(default_factory=list)
    first_build: bool = False

    @property
    def blocked(self) -> bool:
        return bool(self.breaches)

    def metadata(self) -> dict[str, Any]:
        """Per CRM and field, the figures that moved (the build's metadata and audit details)."""
        moved = {}
        for f in self.fields:
            if f.config_changed or abs(f.null_rate_increase) > 1e-9 or (f.psi or 0) > 1e-9:
                moved.setdefault(f.crm, {})[f.field] = {
                    "config_changed": f.config_changed,
                    "compared": f.compared,
                    "null_rate": [round(f.null_before, 4), round(f.null_after, 4)],
                    **({"psi": round(f.psi, 4)} if f.psi is not None else {}),
                }
        return {
            "first_build": self.first_build,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "moved": moved,
            "breaches": [b.as_dict() for b in self.breaches],
        }

    def markdown(self) -> str:
        """A table of the fields that moved, for the Dagster UI."""
        lines = [
            "| CRM | field | config-made changes | null rate before → after | PSI |",
            "|---|---|---|---|---|",
        ]
        for f in self.fields:
            if f.config_changed or abs(f.null_rate_increase) > 1e-9 or (f.psi or 0) > 1e-9:
                psi = f"{f.psi:.3f}" if f.psi is not None else ""
                lines.append(
                    f"| {f.crm} | {f.field} | {f.config_changed} of {f.compared} "
                    f"({f.config_changed_share:.1%}) | {f.null_before:.1%} → {f.null_after:.1%} | {psi} |"
                )
        lines += [
            "",
            "| CRM | live rows before | after |",
            "|---|---|---|",
            *(
                f"| {crm} | {self.rows_before.get(crm, 0)} | {self.rows_after.get(crm, 0)} |"
                for crm in sorted(set(self.rows_before) | set(self.rows_after))
            ),
        ]
        return "\n".join(lines)


def measure_impact(
    entity: str,
    previous: pl.DataFrame | None,
    current: pl.DataFrame,
    limits: ChangeImpactConfig,
    pii: Collection[str] = (),
) -> ImpactReport:
    """Compare the build about to be published (``current``) with the published one (``previous``,
    decrypted). Without a previous table there is nothing to compare: the first build passes."""
    report = ImpactReport(entity)
    if previous is None or previous.is_empty() or not set(KEY) <= set(previous.columns):
        report.first_build = True
        report.rows_after = _live_counts(current)
        return report
    model = ENTITIES[entity]
    fields = [f for f in model.fields if f.name in current.columns and f.name in previous.columns]
    report.rows_before, report.rows_after = _live_counts(previous), _live_counts(current)
    before_profile = _profile(previous, fields)
    after_profile = _profile(current, fields)
    changed = _config_changed(previous, current, fields, pii)
    for crm in sorted(report.rows_before):
        before_rows, after_rows = report.rows_before[crm], report.rows_after.get(crm, 0)
        judged = before_rows >= limits.min_rows
        loss = (before_rows - after_rows) / before_rows if before_rows else 0.0
        limit = limits.limit(ROW_LOSS, crm, entity)
        if judged and loss > limit:
            gone = "every one" if after_rows == 0 else f"{before_rows - after_rows}"
            report.breaches.append(
                Breach(
                    crm,
                    entity,
                    None,
                    ROW_LOSS,
                    loss,
                    limit,
                    f"{crm} {entity}: {gone} of its {before_rows} live rows gone since the last build "
                    f"({loss:.1%} > {limit:.1%})",
                    {"rows_before": before_rows, "rows_after": after_rows},
                )
            )
        for f in fields:
            impact = _field_impact(crm, f, before_profile, after_profile, changed, pii)
            report.fields.append(impact)
            if judged and after_rows:
                report.breaches += _judge(entity, impact, limits)
    return report


def _live_counts(frame: pl.DataFrame) -> dict[str, int]:
    if frame.is_empty():
        return {}
    live = frame.filter(pl.col("deleted_at").is_null()) if "deleted_at" in frame.columns else frame
    return {crm: int(n) for crm, n in live.group_by("source_system").len().iter_rows()}


def _categorical(f: Field) -> bool:
    return f.enum is not None or f.type == "boolean"


@dataclass(frozen=True)
class _Profile:
    rows: dict[str, int]
    nulls: dict[tuple[str, str], int]  # (crm, field) -> nulls among live rows
    values: dict[tuple[str, str], dict[str, int]]  # (crm, categorical field) -> value -> count


def _profile(frame: pl.DataFrame, fields: list[Field]) -> _Profile:
    """Null counts of every field and value counts of the categorical ones, per CRM (live rows)."""
    live = frame.filter(pl.col("deleted_at").is_null()) if "deleted_at" in frame.columns else frame
    counts = live.group_by("source_system").agg(
        pl.len().alias("__rows"), *(pl.col(f.name).null_count().alias(f.name) for f in fields)
    )
    rows, nulls = {}, {}
    for row in counts.iter_rows(named=True):
        crm = row["source_system"]
        rows[crm] = int(row["__rows"])
        for f in fields:
            nulls[(crm, f.name)] = int(row[f.name])
    values: dict[tuple[str, str], dict[str, int]] = {}
    for f in fields:
        if not _categorical(f):
            continue
        for crm, value, n in (
            live.group_by("source_system", pl.col(f.name).cast(pl.String).alias("__value")).len().iter_rows()
        ):
            values.setdefault((crm, f.name), {})["null" if value is None else value] = int(n)
    return _Profile(rows, nulls, values)


@dataclass(frozen=True)
class _Changed:
    compared: dict[str, int]  # crm -> rows in both builds with the same raw load
    counts: dict[tuple[str, str], int]  # (crm, field) -> of those, rows whose value changed
    examples: dict[tuple[str, str], list[dict[str, Any]]]


def _config_changed(
    previous: pl.DataFrame, current: pl.DataFrame, fields: list[Field], pii: Collection[str]
) -> _Changed:
    """Rows whose raw load is the same in both builds, and per field how many of them changed."""
    if LOAD not in previous.columns or LOAD not in current.columns:
        return _Changed({}, {}, {})  # a table written before this gate existed: not measurable once
    names = [f.name for f in fields]
    old = previous.select(
        *KEY, LOAD, *(pl.col(n).cast(current.schema[n], strict=False).alias(f"{n}__old") for n in names)
    )
    same = current.select(*KEY, LOAD, *names).join(old, on=[*KEY, LOAD], how="inner")
    same = same.filter(pl.col(LOAD).is_not_null())
    flags = same.select("source_system", *(pl.col(n).ne_missing(pl.col(f"{n}__old")).alias(n) for n in names))
    sums = flags.group_by("source_system").agg(pl.len().alias("__rows"), *(pl.col(n).sum() for n in names))
    compared, counts, examples = {}, {}, {}
    for row in sums.iter_rows(named=True):
        crm = row["source_system"]
        compared[crm] = int(row["__rows"])
        for n in names:
            if row[n]:
                counts[(crm, n)] = int(row[n])
                examples[(crm, n)] = _examples(same, crm, n, n in pii)
    return _Changed(compared, counts, examples)


def _examples(same: pl.DataFrame, crm: str, name: str, is_pii: bool) -> list[dict[str, Any]]:
    rows = (
        same.filter((pl.col("source_system") == crm) & pl.col(name).ne_missing(pl.col(f"{name}__old")))
        .sort("source_id")
        .head(_EXAMPLES)
        .select("source_id", pl.col(f"{name}__old").alias("old"), pl.col(name).alias("new"))
    )
    show = pii_hash if is_pii else _text
    return [
        {"source_id": r["source_id"], "old": show(r["old"]), "new": show(r["new"])}
        for r in rows.iter_rows(named=True)
    ]


def _text(value: object) -> object:
    return value if value is None or isinstance(value, bool | int | float) else str(value)


def _field_impact(
    crm: str, f: Field, before: _Profile, after: _Profile, changed: _Changed, pii: Collection[str]
) -> FieldImpact:
    rows_before, rows_after = before.rows.get(crm, 0), after.rows.get(crm, 0)
    null_before = before.nulls.get((crm, f.name), 0) / rows_before if rows_before else 0.0
    null_after = after.nulls.get((crm, f.name), 0) / rows_after if rows_after else 0.0
    psi = largest = None
    shares_before, shares_after = {}, {}
    if _categorical(f) and rows_before and rows_after:
        shares_before = _shares(before.values.get((crm, f.name), {}), rows_before, f.name in pii)
        shares_after = _shares(after.values.get((crm, f.name), {}), rows_after, f.name in pii)
        psi, largest = _psi(shares_before, shares_after)
    return FieldImpact(
        crm,
        f.name,
        changed.compared.get(crm, 0),
        changed.counts.get((crm, f.name), 0),
        null_before,
        null_after,
        psi,
        largest,
        shares_before,
        shares_after,
        changed.examples.get((crm, f.name), []),
    )


def _shares(counts: dict[str, int], total: int, is_pii: bool) -> dict[str, float]:
    return {(pii_hash(v) if is_pii and v != "null" else v): n / total for v, n in sorted(counts.items())}


def _psi(before: dict[str, float], after: dict[str, float]) -> tuple[float, float]:
    """Population stability index and the largest share any one value gained or lost."""
    psi, largest = 0.0, 0.0
    for value in set(before) | set(after):
        b, a = max(before.get(value, 0.0), _EPSILON), max(after.get(value, 0.0), _EPSILON)
        psi += (a - b) * math.log(a / b)
        largest = max(largest, abs(after.get(value, 0.0) - before.get(value, 0.0)))
    return psi, largest


def _judge(entity: str, f: FieldImpact, limits: ChangeImpactConfig) -> list[Breach]:
    breaches = []
    at = f"{f.crm} {entity}.{f.field}"
    limit = limits.limit(CONFIG_CHANGED, f.crm, entity, f.field)
    if f.compared and f.config_changed_share > limit:
        breaches.append(
            Breach(
                f.crm,
                entity,
                f.field,
                CONFIG_CHANGED,
                f.config_changed_share,
                limit,
                f"{at}: {f.config_changed} of {f.compared} rows changed while their raw row did not "
                f"({f.config_changed_share:.1%} > {limit:.1%}): the configuration rewrote them",
                {"rows_changed": f.config_changed, "rows_compared": f.compared, "examples": f.examples},
            )
        )
    limit = limits.limit(NULL_RATE, f.crm, entity, f.field)
    if f.null_rate_increase > limit:
        breaches.append(
            Breach(
                f.crm,
                entity,
                f.field,
                NULL_RATE,
                f.null_rate_increase,
                limit,
                f"{at}: null in {f.null_after:.1%} of live rows, was {f.null_before:.1%} "
                f"(+{f.null_rate_increase:.1%} > {limit:.1%})",
                {"null_before": round(f.null_before, 5), "null_after": round(f.null_after, 5)},
            )
        )
    limit = limits.limit(SHIFT, f.crm, entity, f.field)
    if f.psi is not None and f.psi > limit:
        breaches.append(
            Breach(
                f.crm,
                entity,
                f.field,
                SHIFT,
                f.psi,
                limit,
                f"{at}: its values' distribution shifted (PSI {f.psi:.2f} > {limit:.2f}; "
                f"{f.largest_move:.1%} of rows moved between values)",
                {
                    "before": {k: round(v, 4) for k, v in f.before.items()},
                    "after": {k: round(v, 4) for k, v in f.after.items()},
                },
            )
        )
    return breaches
