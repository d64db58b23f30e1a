"""The change-impact gate, on frames: what it measures and when it blocks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from sync_platform.canonical.impact import CONFIG_CHANGED, NULL_RATE, ROW_LOSS, SHIFT, measure_impact
from sync_platform.canonical.model import ENTITIES
from sync_platform.core.config import ChangeImpactConfig, ConfigError, ImpactOverride, load_sync_config
from sync_platform.security.redaction import HASH_PATTERN

STAGES = ("lead", "prospect", "customer", "churned", "other")
LIMITS = ChangeImpactConfig()


def contacts(n: int = 200, crm: str = "hubspot", load: str = "load-1") -> pl.DataFrame:
    """``n`` live canonical contacts of one CRM, every raw row written by load ``load``."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "source_system": crm,
            "source_id": str(i),
            "email": f"p{i}@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "phone": f"+1415555{i:04d}",
            "title": "CTO",
            "account_source_id": None,
            "lifecycle_stage": STAGES[i % len(STAGES)],
            "email_opt_out": False,
            "created_at": at,
            "updated_at": at,
            "deleted_at": None,
            "mapping_version": 1,
            "source_load_id": load,
        }
        for i in range(n)
    ]
    return pl.DataFrame(rows, schema=ENTITIES["contact"].schema)


def rewrite(frame: pl.DataFrame, rows: int, **values: object) -> pl.DataFrame:
    """The first ``rows`` rows with ``values`` set (same raw load unless ``source_load_id`` is given)."""
    first = pl.arange(0, frame.height) < rows
    return frame.with_columns(
        pl.when(first).then(pl.lit(v, frame.schema[c])).otherwise(pl.col(c)).alias(c)
        for c, v in values.items()
    )


def metrics(report) -> set[tuple[str, str | None, str]]:
    return {(b.crm, b.field, b.metric) for b in report.breaches}


def test_the_first_build_has_nothing_to_compare_and_passes() -> None:
    report = measure_impact("contact", None, contacts(), LIMITS)
    assert report.first_build and not report.blocked and report.rows_after == {"hubspot": 200}


def test_an_identical_rebuild_passes_with_nothing_moved() -> None:
    report = measure_impact("contact", contacts(), contacts(), LIMITS)
    assert not report.blocked and report.metadata()["moved"] == {}


def test_a_value_map_rewriting_valid_values_is_blocked_naming_crm_entity_and_field() -> None:
    """The incident: a picklist value mapped to a valid but wrong stage, raw rows untouched."""
    before = contacts()
    stage = pl.col("lifecycle_stage")
    after = before.with_columns(
        pl.when(stage == "customer").then(pl.lit("churned")).otherwise(stage).alias(stage.meta.output_name())
    )
    report = measure_impact("contact", before, after, LIMITS)
    assert ("hubspot", "lifecycle_stage", CONFIG_CHANGED) in metrics(report)
    breach = next(b for b in report.breaches if b.metric == CONFIG_CHANGED)
    assert breach.details["rows_changed"] == 40  # every customer, 20 %
    assert "hubspot contact.lifecycle_stage" in breach.message and "40 of 200" in breach.message
    shift = next(b for b in report.breaches if b.metric == SHIFT)
    assert shift.details["before"]["churned"] == 0.2 and shift.details["after"]["churned"] == 0.4
    assert "customer" not in shift.details["after"]


def test_the_same_changes_made_by_the_crm_are_not_config_made() -> None:
    before = contacts()
    after = rewrite(before, 20, title="VP", source_load_id="load-2")  # 10 % edited in the CRM
    report = measure_impact("contact", before, after, LIMITS)
    assert not report.blocked
    title = next(f for f in report.fields if f.field == "title")
    assert (title.compared, title.config_changed) == (180, 0)


def test_a_field_turned_null_is_blocked_and_its_examples_are_hashed() -> None:
    """The incident: ``phone`` read from the wrong column, every value normalized to null."""
    before = contacts()
    after = before.with_columns(pl.lit(None, pl.String).alias("phone"))
    report = measure_impact("contact", before, after, LIMITS, pii={"phone"})
    assert {("hubspot", "phone", CONFIG_CHANGED), ("hubspot", "phone", NULL_RATE)} <= metrics(report)
    examples = next(b for b in report.breaches if b.metric == CONFIG_CHANGED).details["examples"]
    assert examples and all(HASH_PATTERN.fullmatch(e["old"]) for e in examples)
    assert "+1415555" not in str(report.metadata()) + str([b.as_dict() for b in report.breaches])


def test_a_crm_that_vanished_or_lost_a_fifth_of_its_rows_is_blocked() -> None:
    before = pl.concat([contacts(), contacts(100, crm="salesforce")])
    vanished = measure_impact("contact", before, contacts(), LIMITS)
    assert metrics(vanished) == {("salesforce", None, ROW_LOSS)}
    assert "every one of its 100 live rows" in vanished.breaches[0].message
    shrunk = measure_impact(
        "contact", before, pl.concat([contacts(), contacts(75, crm="salesforce")]), LIMITS
    )
    assert metrics(shrunk) == {("salesforce", None, ROW_LOSS)}
    fine = measure_impact("contact", before, pl.concat([contacts(), contacts(85, crm="salesforce")]), LIMITS)
    assert not fine.blocked


def test_deleted_rows_count_as_lost_live_rows() -> None:
    before = contacts()
    after = rewrite(before, 100, deleted_at=datetime(2026, 2, 1, tzinfo=UTC), source_load_id="load-2")
    assert ("hubspot", None, ROW_LOSS) in metrics(measure_impact("contact", before, after, LIMITS))


def test_the_most_specific_override_wins() -> None:
    limits = ChangeImpactConfig(
        overrides=[
            ImpactOverride(crm="hubspot", max_config_changed_share=0.01),
            ImpactOverride(crm="hubspot", entity="contact", field="title", max_config_changed_share=1.0),
        ]
    )
    before = contacts()
    after = rewrite(before, 200, title="Chief Technology Officer")  # a normalizer change, intended
    assert not measure_impact("contact", before, after, limits).blocked
    assert limits.limit(CONFIG_CHANGED, "hubspot", "contact", "email") == 0.01
    assert limits.limit(CONFIG_CHANGED, "salesforce", "contact", "title") == 0.05


def test_a_crm_below_min_rows_is_measured_not_judged() -> None:
    before, after = contacts(20), contacts(20).with_columns(pl.lit(None, pl.String).alias("phone"))
    report = measure_impact("contact", before, after, LIMITS)
    assert not report.blocked and next(f for f in report.fields if f.field == "phone").null_after == 1.0


def test_a_table_published_before_the_gate_existed_is_compared_without_the_load_ids() -> None:
    before = contacts().drop("source_load_id")
    after = contacts().with_columns(pl.lit(None, pl.String).alias("phone"))
    report = measure_impact("contact", before, after, LIMITS)
    assert metrics(report) == {("hubspot", "phone", NULL_RATE)}  # config-made share not measurable


def test_a_bad_limit_in_sync_yaml_fails_at_load_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(
        "quality:\n  change_impact:\n    overrides:\n      - {crm: hubspot, max_null_rate: 0.5}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_sync_config(path)
    assert str(path) in str(caught.value) and "quality.change_impact.overrides.0.max_null_rate" in str(
        caught.value
    )
