"""Conflicts across CRMs: the same golden record with different facts in different systems."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from sync_platform.reconcile.cross_crm import cross_crm_conflicts


def _contacts(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "source_system": pl.String,
            "source_id": pl.String,
            "customer_id": pl.String,
            "first_name": pl.String,
            "title": pl.String,
            "email_opt_out": pl.Boolean,
            "deleted_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


def test_only_linked_records_are_compared_and_nulls_do_not_conflict():
    frame = _contacts(
        [
            ("salesforce", "s1", "c1", "Ada", "CTO", False, None),
            ("hubspot", "h1", "c1", "Ada", "Chief Technology Officer", False, None),  # title conflicts
            ("dynamics", "d1", "c1", None, "CTO", False, None),  # a null is no opinion
            ("salesforce", "s2", "c2", "Bob", "CEO", False, None),
            ("hubspot", "h2", "c2", "Bob", "CEO", True, None),  # opt-out conflicts
            ("salesforce", "s3", "c3", "Cy", "VP", False, None),  # in one CRM only
            ("salesforce", "s4", "c4", "Di", "VP", False, None),
            (
                "hubspot",
                "h4",
                "c4",
                "Dee",
                "VP",
                False,
                datetime(2026, 1, 1, tzinfo=UTC),
            ),  # deleted: not linked
            ("salesforce", "s5", "c5", "Eve", "VP", False, None),
            ("salesforce", "s6", "c5", "Evelyn", "VP", False, None),  # same CRM twice: not across CRMs
        ]
    )
    outcome = cross_crm_conflicts(frame, "contacts")
    assert outcome.linked == 2
    assert sorted(outcome.conflicts.rows()) == [
        ("c1", "title", "dynamics+hubspot+salesforce"),
        ("c2", "email_opt_out", "hubspot+salesforce"),
    ]
    assert outcome.diff.counts["diverged"] == 2 and outcome.diff.drift_share == 1.0
    assert dict(outcome.field_counts().iter_rows()) == {"email_opt_out": 1, "title": 1}


def test_agreeing_systems_have_no_conflict():
    frame = _contacts(
        [
            ("salesforce", "s1", "c1", "Ada", "CTO", False, None),
            ("hubspot", "h1", "c1", "Ada", "CTO", False, None),
        ]
    )
    outcome = cross_crm_conflicts(frame, "contacts")
    assert outcome.linked == 1 and outcome.conflicts.is_empty() and outcome.diff.drift_share == 0.0
