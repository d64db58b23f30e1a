"""apply_mapping on each CRM's raw tables: canonical shape, values, ignored columns, failures, deletes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import polars as pl
import pytest
import yaml

from sync_platform.canonical.mapping import (
    ENTITIES,
    Mapping,
    MappingError,
    apply_mapping,
    check_value_maps,
    parse_mapping,
)
from sync_platform.ingest.sandbox_raw import ROLE_TABLES, raw_frame
from sync_platform.sandbox.state import SandboxState
from sync_platform_tests.canonical.conftest import MAPPINGS_DIR


def _salesforce_contacts(**overrides: list) -> pl.DataFrame:
    """Two raw Salesforce contacts with the real column names and types."""
    stamp = datetime(2025, 3, 1, 12, tzinfo=UTC)
    columns = {
        "id": ["003Sb0000000001AAA", "003Sb0000000002AAA"],
        "owner_id": ["005Sb0000000001AAA"] * 2,
        "created_date": [stamp, stamp],
        "last_modified_date": [stamp, stamp],
        "system_modstamp": [stamp, stamp],
        "is_deleted": [False, True],
        "first_name": ["  Ada ", None],
        "last_name": ["Lovelace", "van  der Berg"],
        "email": ["  Ada.Lovelace@Example.COM ", "x at y"],
        "phone": ["(415) 555-0123", "not a phone"],
        "title": ["CTO", None],
        "account_id": ["001Sb0000000001AAA", None],
        "lead_source": ["Web", "Other"],
        "customer_status__c": ["Active", None],
        "has_opted_out_of_email": [None, True],
        "deleted_at": [None, stamp],
    }
    columns.update(overrides)
    # DuckDB hands raw timestamps back as Etc/UTC
    return pl.DataFrame(columns).with_columns(pl.col(pl.Datetime).dt.convert_time_zone("Etc/UTC"))


def test_salesforce_contact_values_are_canonical(mappings: dict[str, Mapping]) -> None:
    result = apply_mapping(mappings["salesforce"], "contact", _salesforce_contacts())
    rows = result.frame.to_dicts()
    assert rows[0] | {"created_at": None, "updated_at": None} == {
        "source_system": "salesforce",
        "source_id": "003Sb0000000001AAA",
        "email": "ada.lovelace@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "phone": "+14155550123",
        "title": "CTO",
        "account_source_id": "001Sb0000000001AAA",
        "lifecycle_stage": "customer",
        "email_opt_out": False,
        "created_at": None,
        "updated_at": None,
        "deleted_at": None,
        "mapping_version": 1,
        "source_load_id": None,  # a raw frame without dlt's load id
    }
    assert rows[0]["updated_at"] == datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert rows[1]["last_name"] == "van der Berg"  # inner spaces collapsed, case kept
    assert rows[1]["lifecycle_stage"] == "other"  # null status: the default
    assert rows[1]["email"] == "x at y"  # normalized, not judged: the quality gate rejects it
    assert rows[1]["deleted_at"] == datetime(2025, 3, 1, 12, tzinfo=UTC)  # soft delete carried through


def test_invalid_phone_becomes_null_and_is_flagged(mappings: dict[str, Mapping]) -> None:
    result = apply_mapping(mappings["salesforce"], "contact", _salesforce_contacts())
    assert result.frame["phone"].to_list() == ["+14155550123", None]
    assert result.conversion_failures.to_dicts() == [
        {
            "source_system": "salesforce",
            "source_id": "003Sb0000000002AAA",
            "field": "phone",
            "source_column": "phone",
            "raw_value": "not a phone",
            "problem": "invalid_phone",
        }
    ]
    assert result.failure_counts() == {"phone": 1}


@pytest.mark.parametrize("crm", ["salesforce", "hubspot", "dynamics"])
@pytest.mark.parametrize("entity", list(ENTITIES))
def test_every_crm_maps_to_the_canonical_schema(
    crm: str, entity: str, mappings: dict[str, Mapping], population: SandboxState
) -> None:
    raw = raw_frame(population, crm, ROLE_TABLES[crm][entity])
    result = apply_mapping(mappings[crm], entity, raw)
    assert result.frame.schema == pl.Schema(ENTITIES[entity].schema)
    assert result.frame.height == raw.height
    assert result.frame["source_system"].unique().to_list() == [crm]
    assert result.frame["source_id"].n_unique() == raw.height
    assert result.frame["mapping_version"].unique().to_list() == [mappings[crm].version]
    assert result.conversion_failures.is_empty()  # the sandbox's mess is all of a kind the mapping handles
    required = mappings[crm].required_fields(entity)
    assert result.frame.select(pl.col(required).null_count()).row(0) == (0,) * len(required)


def test_each_crm_vocabulary_lands_on_the_canonical_enums(
    mappings: dict[str, Mapping], population: SandboxState
) -> None:
    contacts = {
        crm: apply_mapping(mappings[crm], "contact", raw_frame(population, crm, "contacts")).frame
        for crm in ROLE_TABLES
    }
    # a blank Customer_Status__c is the mapping's default, "other"
    assert set(contacts["salesforce"]["lifecycle_stage"]) == {"prospect", "customer", "churned", "other"}
    assert set(contacts["hubspot"]["lifecycle_stage"]) == {"lead", "prospect", "customer", "other"}
    assert set(contacts["dynamics"]["lifecycle_stage"]) == {"other"}
    for crm, table in (("salesforce", "cases"), ("hubspot", "tickets"), ("dynamics", "incidents")):
        cases = apply_mapping(mappings[crm], "interaction", raw_frame(population, crm, table)).frame
        assert set(cases["status"]) <= {"open", "pending", "closed"} and "closed" in set(cases["status"])
        assert set(cases["priority"]) == {"low", "medium", "high"}
    incidents = raw_frame(population, "dynamics", "incidents")
    mapped = apply_mapping(mappings["dynamics"], "interaction", incidents).frame
    pairs = set(zip(incidents["prioritycode"], mapped["priority"], strict=True))
    assert pairs == {(1, "high"), (2, "medium"), (3, "low")}


def test_phones_of_every_crm_format_reach_e164(
    mappings: dict[str, Mapping], population: SandboxState
) -> None:
    for crm in ROLE_TABLES:
        raw = raw_frame(population, crm, "contacts")
        source = mappings[crm].entity("contact").fields["phone"].source
        phones = apply_mapping(mappings[crm], "contact", raw).frame["phone"]
        assert phones.null_count() == raw[source].null_count()  # every sandbox phone is a real shape
        assert phones.drop_nulls().str.contains(r"^\+(1\d{10}|44\d{10})$").all()


def test_unknown_source_columns_are_ignored_and_counted(mappings: dict[str, Mapping]) -> None:
    raw = _salesforce_contacts()
    baseline = apply_mapping(mappings["salesforce"], "contact", raw)
    with_custom = raw.with_columns(pl.lit("gold").alias("loyalty_tier__c"), pl.lit(1).alias("_dlt_load_id"))
    result = apply_mapping(mappings["salesforce"], "contact", with_custom)
    assert baseline.ignored_columns == ("is_deleted", "last_modified_date", "lead_source", "owner_id")
    assert result.ignored_columns == (
        "is_deleted",
        "last_modified_date",
        "lead_source",
        "loyalty_tier__c",
        "owner_id",
    )  # dlt's own columns are not CRM fields
    assert result.ignored_count == baseline.ignored_count + 1
    assert result.frame.drop("source_load_id").equals(baseline.frame.drop("source_load_id"))
    assert result.frame["source_load_id"].to_list() == ["1", "1"]  # the raw row's load: lineage


def test_missing_source_column_fails_naming_file_and_key(mappings: dict[str, Mapping]) -> None:
    with pytest.raises(MappingError) as caught:
        apply_mapping(mappings["salesforce"], "contact", _salesforce_contacts().drop("customer_status__c"))
    assert str(caught.value) == (
        f"{mappings['salesforce'].file}: entities.contact.fields.lifecycle_stage.source: "
        "column 'customer_status__c' is not in the raw contacts table"
    )


def test_value_map_gap_is_found_in_the_data(mappings: dict[str, Mapping]) -> None:
    raw = _salesforce_contacts(customer_status__c=["Active", "Partner"])
    gaps = check_value_maps(mappings["salesforce"], "contact", raw)
    assert [(g.file, g.key, g.source_column, g.values) for g in gaps] == [
        (
            mappings["salesforce"].file,
            "entities.contact.fields.lifecycle_stage.values",
            "customer_status__c",
            {"Partner": 1},
        )
    ]
    expected = (
        r"salesforce\.yaml: entities\.contact\.fields\.lifecycle_stage\.values: "
        r"value map lacks values found in column 'customer_status__c': 'Partner'"
    )
    with pytest.raises(MappingError, match=expected):
        check_value_maps(mappings["salesforce"], "contact", raw, strict=True)
    result = apply_mapping(mappings["salesforce"], "contact", raw)
    assert result.frame["lifecycle_stage"].to_list() == ["customer", None]  # not defaulted: flagged
    assert result.conversion_failures.select("field", "raw_value", "problem").rows() == [
        ("phone", "not a phone", "invalid_phone"),
        ("lifecycle_stage", "Partner", "unmapped_value"),
    ]


def test_unmapped_fallback_makes_unknown_values_explicitly_acceptable(mappings: dict[str, Mapping]) -> None:
    doc = _document("salesforce")
    doc["entities"]["contact"]["fields"]["lifecycle_stage"]["unmapped"] = "other"
    tolerant = parse_mapping(doc, "tolerant.yaml")
    raw = _salesforce_contacts(customer_status__c=["Partner", None])
    assert check_value_maps(tolerant, "contact", raw) == []
    assert apply_mapping(tolerant, "contact", raw).frame["lifecycle_stage"].to_list() == ["other", "other"]


def test_integer_codes_are_looked_up_as_text(mappings: dict[str, Mapping], population: SandboxState) -> None:
    incidents = raw_frame(population, "dynamics", "incidents").head(50)
    assert check_value_maps(mappings["dynamics"], "interaction", incidents) == []
    gaps = check_value_maps(
        mappings["dynamics"], "interaction", incidents.with_columns(pl.lit(7, pl.Int64).alias("statuscode"))
    )
    assert gaps[0].values == {"7": 50}


def test_string_dates_are_parsed_with_the_mapping_format_and_misparses_are_flagged() -> None:
    doc = _document("salesforce")
    doc["entities"]["contact"]["fields"]["created_at"] = {
        "source": "created_date",
        "format": "%d/%m/%Y %H:%M",
    }
    mapping = parse_mapping(doc, "dated.yaml")
    raw = _salesforce_contacts(created_date=["01/03/2025 09:30", "2025-03-01T09:30:00Z"])
    result = apply_mapping(mapping, "contact", raw)
    assert result.frame["created_at"].to_list() == [datetime(2025, 3, 1, 9, 30, tzinfo=UTC), None]
    assert result.conversion_failures.select("field", "raw_value", "problem").rows() == [
        ("phone", "not a phone", "invalid_phone"),
        ("created_at", "2025-03-01T09:30:00Z", "conversion_failed"),
    ]


def test_soft_deletes_propagate_and_tombstones_keep_their_key(
    mappings: dict[str, Mapping], edited_population: SandboxState
) -> None:
    for crm in ROLE_TABLES:
        raw = raw_frame(edited_population, crm, "contacts")
        frame = apply_mapping(mappings[crm], "contact", raw).frame
        deleted = frame.filter(pl.col("deleted_at").is_not_null())
        assert deleted.height == 2
        assert (
            deleted["source_id"].to_list()
            == raw.filter(pl.col("deleted_at").is_not_null())[
                mappings[crm].entity("contact").source_id
            ].to_list()
        )
    raw = raw_frame(edited_population, "dynamics", "contacts")
    tombstones = apply_mapping(mappings["dynamics"], "contact", raw).frame.filter(
        pl.col("deleted_at").is_not_null()
    )
    assert tombstones["email"].null_count() == 2  # Dataverse said only "deleted"
    assert tombstones["lifecycle_stage"].to_list() == ["other", "other"]  # defaults fill required fields
    assert tombstones["updated_at"].to_list() == tombstones["deleted_at"].to_list()


def test_lazy_input_gives_the_same_result(mappings: dict[str, Mapping], population: SandboxState) -> None:
    raw = raw_frame(population, "hubspot", "contacts")
    eager = apply_mapping(mappings["hubspot"], "contact", raw)
    lazy = apply_mapping(mappings["hubspot"], "contact", raw.lazy())
    assert lazy.frame.equals(eager.frame) and lazy.ignored_columns == eager.ignored_columns


def _document(crm: str) -> dict:
    return copy.deepcopy(yaml.safe_load((MAPPINGS_DIR / f"{crm}.yaml").read_text()))
