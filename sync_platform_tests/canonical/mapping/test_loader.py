"""Mapping files: the shipped ones load; malformed ones fail at load time naming file, key and problem."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sync_platform.canonical.mapping import ENTITIES, Mapping, MappingError, load_mapping, load_mappings
from sync_platform.canonical.model import SOURCE_SYSTEMS
from sync_platform_tests.canonical.conftest import MAPPINGS_DIR

SALESFORCE = yaml.safe_load((MAPPINGS_DIR / "salesforce.yaml").read_text())


def test_every_crm_has_a_mapping_for_every_entity(mappings: dict[str, Mapping]) -> None:
    assert sorted(mappings) == sorted(SOURCE_SYSTEMS)
    for crm, mapping in mappings.items():
        assert mapping.crm == crm and mapping.version >= 1
        assert set(mapping.entities) == set(ENTITIES)
        assert Path(mapping.file).name == f"{crm}.yaml"


def test_required_and_sensitive_fields_combine_model_and_mapping(mappings: dict[str, Mapping]) -> None:
    assert mappings["salesforce"].required_fields("contact") == (
        "lifecycle_stage",
        "email_opt_out",
        "updated_at",
        "last_name",
    )
    assert "last_name" not in mappings["hubspot"].required_fields("contact")  # HubSpot contacts may lack one
    sensitive = set(mappings["hubspot"].sensitive_fields("contact"))
    assert sensitive == {"email", "first_name", "last_name", "phone"}


def test_fingerprint_changes_with_content_even_under_the_same_version(tmp_path: Path) -> None:
    changed = copy.deepcopy(SALESFORCE)
    changed["entities"]["contact"]["fields"]["title"] = {"source": "title"}
    original, edited = _load(tmp_path, SALESFORCE), _load(tmp_path, changed)
    assert original.version == edited.version
    assert original.fingerprint != edited.fingerprint


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            doc = doc[key]
        doc[last] = value

    return edit


def _delete(path: str) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            doc = doc[key]
        del doc[last]

    return edit


CONTACT = "entities.contact"
MALFORMED = {
    "unknown canonical field": (
        _set(f"{CONTACT}.fields.emial", {"source": "email"}),
        f"{CONTACT}.fields.emial",
        "unknown canonical field 'emial' of contact",
    ),
    "unknown cast type": (
        _set(f"{CONTACT}.fields.created_at.type", "datetme"),
        f"{CONTACT}.fields.created_at.type",
        "Input should be 'string', 'integer', 'float', 'boolean' or 'datetime'",
    ),
    "cast the canonical type cannot take": (
        _set(f"{CONTACT}.fields.created_at.type", "boolean"),
        f"{CONTACT}.fields.created_at.type",
        "bad type: cannot turn boolean into created_at, which is datetime",
    ),
    "default of the wrong type": (
        _set(f"{CONTACT}.fields.email_opt_out.default", "no"),
        f"{CONTACT}.fields.email_opt_out.default",
        "bad type: email_opt_out is boolean, got 'no'",
    ),
    "unknown normalizer": (
        _set(f"{CONTACT}.fields.phone.normalize", "e164"),
        f"{CONTACT}.fields.phone.normalize",
        "unknown normalizer 'e164'",
    ),
    "required field of the model without a source": (
        _delete(f"{CONTACT}.fields.updated_at"),
        f"{CONTACT}.fields.updated_at",
        "required canonical field 'updated_at' has no source and no default",
    ),
    "field the mapping requires without a source": (
        _delete(f"{CONTACT}.fields.last_name"),  # salesforce.yaml requires last_name
        f"{CONTACT}.fields.last_name",
        "required canonical field 'last_name' has no source and no default",
    ),
    "value map without a source column": (
        _delete(f"{CONTACT}.fields.lifecycle_stage.source"),
        f"{CONTACT}.fields.lifecycle_stage.values",
        "a value map needs a source column to read",
    ),
    "value map onto a value outside the enum": (
        _set("entities.interaction.fields.status.values.Closed", "done"),
        "entities.interaction.fields.status.values.Closed",
        "'done' is not a status (one of: open, pending, closed)",
    ),
    "source column the CRM source does not write": (
        _set(f"{CONTACT}.fields.email.source", "email_address"),
        f"{CONTACT}.fields.email.source",
        "column 'email_address' is not in raw_salesforce.contacts",
    ),
    "misspelt key": (
        _set(f"{CONTACT}.fields.title", {"sorce": "title"}),
        f"{CONTACT}.fields.title.sorce",
        "Extra inputs are not permitted",
    ),
    "unknown entity": (
        _set("entities.contacts", {"table": "contacts", "source_id": "id", "fields": {}}),
        "entities.contacts",
        "Input should be 'contact', 'account' or 'interaction'",
    ),
    "version that is not a number": (_set("version", "two"), "version", "Input should be a valid integer"),
    "personal data marked not sensitive": (
        _set(f"{CONTACT}.fields.email.sensitive", False),
        f"{CONTACT}.fields.email.sensitive",
        "email is personal data in the canonical model",
    ),
    "system column mapped as a field": (
        _set(f"{CONTACT}.fields.source_id", {"source": "id"}),
        f"{CONTACT}.fields.source_id",
        "'source_id' is a system column",
    ),
    "date format for a text field": (
        _set(f"{CONTACT}.fields.title.format", "%Y-%m-%d"),
        f"{CONTACT}.fields.title.format",
        "a format parses datetimes; title is string",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_mapping_fails_at_load_naming_file_key_and_problem(case: str, tmp_path: Path) -> None:
    edit, key, problem = MALFORMED[case]
    doc = copy.deepcopy(SALESFORCE)
    edit(doc)
    path = tmp_path / "salesforce.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    line = next((line for line in str(caught.value).splitlines() if key + ":" in line), None)
    assert line is not None, f"no problem reported at {key}: {caught.value}"
    assert line.startswith(f"{path}: {key}: ")
    assert problem in line
    assert caught.value.file == str(path)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    doc = copy.deepcopy(SALESFORCE)
    doc["entities"]["contact"]["fields"]["phone"]["normalize"] = "e164"
    doc["entities"]["account"]["fields"]["nmae"] = {"source": "name"}
    with pytest.raises(MappingError) as caught:
        _load(tmp_path, doc)
    keys = [key for key, _ in caught.value.problems]
    assert keys == ["entities.contact.fields.phone.normalize", "entities.account.fields.nmae"]


def test_duplicate_yaml_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = tmp_path / "hubspot.yaml"
    path.write_text(
        (MAPPINGS_DIR / "hubspot.yaml")
        .read_text()
        .replace(
            "      email: {source: email, normalize: email}\n",
            "      email: {source: email, normalize: email}\n      email: {source: company}\n",
            1,
        )
    )
    with pytest.raises(MappingError, match=r"hubspot\.yaml: \(yaml\): .*duplicate key 'email'"):
        load_mapping(path)


def test_two_files_for_one_crm_are_refused(tmp_path: Path) -> None:
    for name in ("salesforce.yaml", "salesforce_v2.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump(SALESFORCE))
    with pytest.raises(MappingError, match=r"salesforce_v2\.yaml: crm: salesforce is already mapped by"):
        load_mappings(tmp_path)


def _load(tmp_path: Path, doc: dict) -> Mapping:
    path = tmp_path / "salesforce.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_mapping(path)
