"""Conflicts across CRMs: the same golden record with different facts in different systems."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from sync_platform.canonical.build import build_entity
from sync_platform.canonical.mapping import load_mappings
from sync_platform.ingest.sandbox_raw import raw_frames
from sync_platform.reconcile.cross_crm import COMPARED, cross_crm_conflicts, unsourced_fields
from sync_platform.sandbox import SandboxConfig, SandboxState
from sync_platform.sandbox import schema as sandbox_schema
from sync_platform.sandbox.generator import PERSON_OFFSET


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


def test_a_value_the_crm_does_not_hold_is_no_opinion():
    frame = _contacts(
        [
            ("salesforce", "s1", "c1", "Ada", "CTO", False, None),
            ("dynamics", "d1", "c1", "Ada", "n/a", True, None),  # title and opt-out: defaults, not Dynamics'
        ]
    )
    unsourced = {"dynamics": {"title", "email_opt_out"}}
    outcome = cross_crm_conflicts(frame, "contacts", unsourced=unsourced)
    assert outcome.linked == 1 and outcome.conflicts.is_empty()
    assert unsourced_fields(load_mappings(), "contacts") == {
        "salesforce": frozenset(),
        "hubspot": frozenset(),
        "dynamics": frozenset({"lifecycle_stage"}),  # Dataverse contacts have no lifecycle field
    }


def _one_person_groups(frame: pl.DataFrame, state: SandboxState, table: str, golden: str) -> pl.DataFrame:
    """Golden records whose CRM records are all one person of the generator (no shared-inbox merge)."""
    if table == "accounts":
        return frame  # company j is company j in every CRM, and domains are not shared
    n = state.config.contacts
    whose = {
        crm: (sandbox_schema.OBJECTS[crm][sandbox_schema.ROLES[crm]["contact"]].parse_id, int(offset * n))
        for crm, offset in PERSON_OFFSET.items()
    }
    person = [whose[s][0](i) + whose[s][1] for s, i in frame.select("source_system", "source_id").iter_rows()]
    frame = frame.with_columns(pl.Series("person", person))
    single = frame.group_by(golden).agg(pl.col("person").n_unique() == 1).filter("person").select(golden)
    return frame.join(single, on=golden, how="semi")


@pytest.mark.parametrize("share", [0.0, 0.05])
def test_the_sandboxs_shared_people_agree_but_for_its_seeded_conflicts(share: float):
    """Sandbox -> mappings -> golden ids -> compare: only the seeded share of people conflict.

    Records that another person's email merged into a golden record (the sandbox's shared inboxes,
    3 % of contacts) conflict on names too: identity's doing, not the data's, so they are left out.
    """
    state = SandboxState(SandboxConfig(contacts=3_000, conflict_share=share))
    mappings = load_mappings()
    for entity, table in (("contact", "contacts"), ("account", "accounts")):
        golden = COMPARED[table][0]
        frame = build_entity(entity, raw_frames(state, entity), mappings).outcome.good
        frame = _one_person_groups(frame, state, table, golden)
        outcome = cross_crm_conflicts(frame, table, unsourced=unsourced_fields(mappings, table))
        assert outcome.linked > (2_000 if entity == "contact" else 250)
        conflicting = outcome.diff.differing / outcome.linked
        if share == 0:
            assert outcome.conflicts.is_empty(), outcome.field_counts()
        else:  # one field of one CRM per conflicting record; a blank or an unlinked record hides some
            assert 0.5 * share < conflicting < 1.5 * share
            assert outcome.conflicts.height == outcome.diff.differing
