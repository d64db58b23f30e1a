"""validate_entity: good and rejected rows with reasons as data; referential integrity; the 30 % incident."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import polars as pl
import pytest
import yaml

from sync_platform.canonical.mapping import Mapping, apply_mapping, parse_mapping
from sync_platform.canonical.quality import ValidationOutcome, referential_failures, validate_entity
from sync_platform.ingest.sandbox_raw import raw_frame
from sync_platform.sandbox.state import SandboxState
from sync_platform_tests.canonical.conftest import MAPPINGS_DIR


def _required(mappings: dict[str, Mapping], entity: str) -> dict[str, tuple[str, ...]]:
    return {crm: mapping.required_fields(entity) for crm, mapping in mappings.items()}


def _assert_partition(outcome: ValidationOutcome, frame: pl.DataFrame) -> None:
    assert outcome.good.columns == outcome.rejected.columns == frame.columns
    assert outcome.rows == frame.height
    both = outcome.good.join(outcome.rejected, on=["source_system", "source_id"], how="semi")
    assert both.is_empty()


@pytest.mark.parametrize(
    ("entity", "expected_rules"),
    [
        ("contact", {"email_format"}),  # the sandbox's "x at y" addresses
        ("account", set()),
        ("interaction", {"closed_has_closed_at"}),  # closed cases without a close date
    ],
)
def test_sandbox_tables_pass_but_for_the_seeded_rule_breakers(
    entity: str, expected_rules: set[str], canonical: dict[str, pl.DataFrame], mappings: dict[str, Mapping]
) -> None:
    frame = canonical[entity]
    outcome = validate_entity(entity, frame, _required(mappings, entity))
    _assert_partition(outcome, frame)
    assert set(outcome.rule_counts()) == expected_rules
    assert outcome.rejected_share < 0.01
    assert outcome.table_failures.is_empty()
    assert outcome.rejected.height == outcome.failures.select("source_system", "source_id").n_unique()


def test_each_broken_rule_is_a_row_naming_rule_column_and_value(
    canonical: dict[str, pl.DataFrame], mappings: dict[str, Mapping]
) -> None:
    contacts = canonical["contact"].filter(pl.col("deleted_at").is_null())
    clean = validate_entity("contact", contacts).good.filter(pl.col("source_system") == "salesforce").head(8)
    ids = clean["source_id"].to_list()

    def on(row: int, column: str, value: object) -> pl.Expr:
        return pl.when(pl.col("source_id") == ids[row]).then(pl.lit(value)).otherwise(column).alias(column)

    broken = clean.with_columns(
        on(0, "email", "ada at example.com"),
        on(1, "phone", "(415) 555-0123"),
        on(2, "lifecycle_stage", "vip"),
        on(3, "updated_at", None),
        on(4, "created_at", datetime(2030, 1, 1, tzinfo=UTC)),
        on(5, "last_name", None),
        on(7, "source_id", ids[6]),
    )
    outcome = validate_entity("contact", broken, _required(mappings, "contact"))
    _assert_partition(outcome, broken)
    found = sorted(outcome.failures.select("source_id", "rule", "column", "value").iter_rows(), key=str)
    assert found == [
        (ids[0], "email_format", "email", "ada at example.com"),
        (ids[1], "phone_e164", "phone", "(415) 555-0123"),
        (ids[2], "isin(['lead', 'prospect', 'customer', 'churned', 'other'])", "lifecycle_stage", "vip"),
        (ids[3], "not_nullable", "updated_at", None),
        (ids[4], "created_not_after_updated", "created_at", "2030-01-01 00:00:00.000000+00:00"),
        (ids[5], "required_by_mapping", "last_name", None),  # salesforce.yaml requires it
        (ids[6], "multiple_fields_uniqueness", "source_id", ids[6]),  # both copies of the key
        (ids[6], "multiple_fields_uniqueness", "source_id", ids[6]),
    ]
    assert sorted(outcome.rejected["source_id"].to_list()) == sorted([*ids[:6], ids[6], ids[6]])
    assert outcome.good.is_empty()


def test_mapping_required_fields_apply_to_their_crm_only(
    canonical: dict[str, pl.DataFrame], mappings: dict[str, Mapping]
) -> None:
    live = canonical["contact"].filter(pl.col("deleted_at").is_null())
    sample = pl.concat(
        [live.filter(pl.col("source_system") == crm).head(1) for crm in ("salesforce", "hubspot")]
    )
    outcome = validate_entity(
        "contact",
        sample.with_columns(pl.lit(None, pl.String).alias("last_name")),
        _required(mappings, "contact"),
    )
    assert outcome.rejected["source_system"].to_list() == ["salesforce"]
    assert outcome.failures["rule"].to_list() == ["required_by_mapping"]


def test_interaction_cross_field_rules(canonical: dict[str, pl.DataFrame]) -> None:
    good = validate_entity("interaction", canonical["interaction"]).good
    cases = good.filter(pl.col("status") == "closed").head(2)
    first, second = cases["source_id"].to_list()
    broken = cases.with_columns(
        pl.when(pl.col("source_id") == first).then(None).otherwise("closed_at").alias("closed_at"),
    ).with_columns(
        pl.when(pl.col("source_id") == second)
        .then(pl.col("opened_at") - pl.duration(days=1))
        .otherwise("closed_at")
        .alias("closed_at"),
    )
    outcome = validate_entity("interaction", broken)
    assert sorted(outcome.failures.select("source_id", "rule").iter_rows()) == sorted(
        [(first, "closed_has_closed_at"), (second, "closed_not_before_opened")]
    )


def test_a_table_wide_failure_rejects_every_row(canonical: dict[str, pl.DataFrame]) -> None:
    contacts = canonical["contact"].head(50)
    wrong_dtype = contacts.with_columns(pl.col("email_opt_out").cast(pl.Int64))
    for broken in (contacts.drop("updated_at"), wrong_dtype):
        outcome = validate_entity("contact", broken)
        assert outcome.good.is_empty() and outcome.rejected.height == 50
        assert not outcome.table_failures.is_empty()
    missing = validate_entity("contact", contacts.drop("updated_at"))
    table_rules = set(missing.table_failures.select("rule", "column").iter_rows())
    assert ("column_in_dataframe", "updated_at") in table_rules


def test_deleted_rows_need_only_their_key(canonical: dict[str, pl.DataFrame]) -> None:
    tombstones = canonical["contact"].filter(
        pl.col("deleted_at").is_not_null() & (pl.col("source_system") == "dynamics")
    )
    assert tombstones.height == 2 and tombstones["email"].null_count() == 2
    assert validate_entity("contact", tombstones).good.height == 2
    keyless = tombstones.with_columns(pl.lit("").alias("source_id"))
    outcome = validate_entity("contact", keyless)
    assert outcome.rejected.height == 2
    assert {"str_length(1, None)", "multiple_fields_uniqueness"} <= set(outcome.rule_counts())


def test_referential_integrity(canonical: dict[str, pl.DataFrame]) -> None:
    accounts, contacts = canonical["account"], canonical["contact"]
    assert referential_failures(contacts, accounts, "account_source_id").is_empty()
    target = contacts.filter(pl.col("deleted_at").is_null() & (pl.col("source_system") == "hubspot")).head(3)
    dangling_id, cross_crm_id, unlinked_id = target["source_id"].to_list()
    salesforce_account = accounts.filter(pl.col("source_system") == "salesforce")["source_id"][0]
    edited = contacts.with_columns(
        pl.when(pl.col("source_system") == "hubspot")
        .then(
            pl.when(pl.col("source_id") == dangling_id)
            .then(pl.lit("999999"))
            .when(pl.col("source_id") == cross_crm_id)
            .then(pl.lit(salesforce_account))  # another CRM's
            .when(pl.col("source_id") == unlinked_id)
            .then(None)
            .otherwise("account_source_id")
        )
        .otherwise("account_source_id")
        .alias("account_source_id")
    )
    failures = referential_failures(edited, accounts, "account_source_id")
    assert failures.select("source_id", "rule", "column", "value").rows() == [
        (dangling_id, "account_source_id_exists", "account_source_id", "999999"),
        (cross_crm_id, "account_source_id_exists", "account_source_id", salesforce_account),
    ]
    outcome = validate_entity("contact", edited).with_failures(failures)
    _assert_partition(outcome, edited)
    assert {dangling_id, cross_crm_id} <= set(outcome.rejected["source_id"])
    assert outcome.rule_counts()["account_source_id_exists"] == 2


def test_a_link_to_a_deleted_parent_dangles_unless_allowed(canonical: dict[str, pl.DataFrame]) -> None:
    contacts, interactions = canonical["contact"], canonical["interaction"]
    deleted = contacts.filter(pl.col("deleted_at").is_not_null()).select("source_system", "source_id")
    linked = interactions.join(
        deleted.rename({"source_id": "contact_source_id"}),
        on=["source_system", "contact_source_id"],
        how="semi",
    )
    assert linked.height > 0
    failures = referential_failures(interactions, contacts, "contact_source_id", rule="contact_exists")
    assert sorted(failures["source_id"]) == sorted(linked["source_id"])
    assert set(failures["rule"]) == {"contact_exists"}
    tolerant = referential_failures(interactions, contacts, "contact_source_id", allow_deleted_parents=True)
    assert tolerant.is_empty()


def _swapped_mapping(mappings: dict[str, Mapping]) -> Mapping:
    doc = copy.deepcopy(yaml.safe_load((MAPPINGS_DIR / "salesforce.yaml").read_text()))
    fields = doc["entities"]["contact"]["fields"]
    fields["email"]["source"], fields["last_name"]["source"] = "last_name", "email"
    doc["version"] = mappings["salesforce"].version + 1
    return parse_mapping(doc, "data/mappings/salesforce.yaml")


def test_a_mapping_that_swaps_two_fields_on_30_percent_of_rows_is_stopped(
    state: SandboxState, mappings: dict[str, Mapping]
) -> None:
    """The incident: an import update misread a field configuration and corrupted ~30 % of records."""
    raw = raw_frame(state, "salesforce", "contacts")
    cut = int(raw.height * 0.3)
    corrupted = apply_mapping(_swapped_mapping(mappings), "contact", raw.head(cut)).frame
    intact = apply_mapping(mappings["salesforce"], "contact", raw.slice(cut)).frame
    outcome = validate_entity("contact", pl.concat([corrupted, intact]), _required(mappings, "contact"))
    assert outcome.rejected_share >= 0.25
    corrupted_live = corrupted.filter(pl.col("deleted_at").is_null())
    assert corrupted_live.join(outcome.rejected, on=["source_system", "source_id"], how="anti").is_empty()
    # the intact rows are judged as they would be alone: the corruption does not spill over
    intact_rejected = validate_entity("contact", intact, _required(mappings, "contact")).rejected
    assert outcome.rejected.filter(pl.col("mapping_version") == 1).equals(intact_rejected)
    assert outcome.rule_counts()["email_format"] >= corrupted_live.height


def test_a_misparsed_date_format_is_stopped(state: SandboxState, mappings: dict[str, Mapping]) -> None:
    raw = raw_frame(state, "hubspot", "contacts").with_columns(  # dates as the API spells them
        pl.col("lastmodifieddate").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
    )
    doc = copy.deepcopy(yaml.safe_load((MAPPINGS_DIR / "hubspot.yaml").read_text()))
    doc["entities"]["contact"]["fields"]["updated_at"]["format"] = "%m/%d/%Y"
    misparsing = parse_mapping(doc, "data/mappings/hubspot.yaml")
    cut = int(raw.height * 0.3)
    mapped = [
        apply_mapping(misparsing, "contact", raw.head(cut)),
        apply_mapping(mappings["hubspot"], "contact", raw.slice(cut)),
    ]
    assert mapped[0].failure_counts() == {"updated_at": cut}
    outcome = validate_entity("contact", pl.concat([m.frame for m in mapped]))
    assert 0.29 <= outcome.rejected_share < 0.31
    assert outcome.rule_counts()["not_nullable"] >= cut - 2  # the deleted rows need no updated_at
