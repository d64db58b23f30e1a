"""Mapping files (``data/mappings/<crm>.yaml``): parsed with pydantic, checked against the model.

A malformed mapping fails here, before any data is touched, with a :class:`MappingError` naming
the file, the key path and the problem, e.g. ``data/mappings/hubspot.yaml:
entities.contact.fields.emial: unknown canonical field 'emial' of contact``. Two layers:
pydantic checks the shape (keys, types, enum literals); :func:`_problems` checks the meaning
against the canonical model and the columns the CRM's source writes. Everything that needs the
data (a value the value map lacks) is checked at data time by ``engine.check_value_maps``.

Format, one file per CRM (see ``data/mappings/salesforce.yaml`` for a full one)::

    version: 3                  # bump on any change that is not backward compatible
    crm: salesforce             # the source_system of every row
    phone_region: US            # region of phone numbers written without +country code
    entities:
      contact:
        table: contacts         # raw_<crm>.<table>
        source_id: id           # the CRM's immutable id column
        required: [last_name]   # canonical fields this CRM must fill (beyond the model's own)
        fields:
          email: {source: email, normalize: email}
          lifecycle_stage:
            source: customer_status__c
            values: {Prospect: prospect, Active: customer}
            default: other      # when the source is null; an unmapped value is an error
          created_at: {source: created_date, type: datetime}

A field is read as: source column -> ``type`` cast (``format`` parses strings into datetimes) ->
``normalize`` -> ``values`` -> the canonical type; ``default`` fills rows whose source is null.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from phonenumbers import PhoneMetadata
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, ValidationError, field_validator

from sync_platform.canonical.mapping.normalizers import NORMALIZERS
from sync_platform.canonical.model import ENTITIES, SYSTEM_COLUMNS, Entity
from sync_platform.canonical.model import Field as CanonicalField
from sync_platform.core.settings import load_settings
from sync_platform.ingest.raw_schema import raw_table

SourceType = Literal["string", "integer", "float", "boolean", "datetime"]
EntityName = Literal["contact", "account", "interaction"]
EPOCH_FORMATS = ("epoch_ms", "epoch_s")

# canonical type -> the source types the engine converts into it
_CONVERTIBLE = {
    "string": {"string", "integer", "float", "boolean", "datetime"},
    "boolean": {"boolean", "integer", "string"},
    "datetime": {"datetime", "string", "integer"},
}


class MappingError(ValueError):
    """A mapping is malformed (load time) or does not fit the data (data time).

    ``problems`` holds ``(key path, problem)`` pairs; the message has one line per problem, each
    naming the file.
    """

    def __init__(self, file: str, problems: list[tuple[str, str]]):
        self.file = file
        self.problems = problems
        super().__init__("\n".join(f"{file}: {key}: {problem}" for key, problem in problems))


class FieldMapping(BaseModel):
    """How one canonical field is filled from the raw table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = None
    type: SourceType | None = Field(None, description="Cast the source column to this type first.")
    format: str | None = Field(None, description="strptime format, or epoch_ms / epoch_s, for a datetime.")
    normalize: str | None = None
    values: dict[str, str | StrictBool] | None = Field(None, description="Source value -> canonical value.")
    unmapped: str | None = Field(
        None, description="Canonical value for source values the map lacks; without it they are an error."
    )
    default: str | StrictBool | None = Field(None, description="Value when the source is null.")
    sensitive: StrictBool | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _keys_as_text(cls, values: Any) -> Any:
        """YAML reads ``1: open`` and ``true: x`` as int and bool keys; the engine matches text."""
        if isinstance(values, dict):
            return {(str(k).lower() if isinstance(k, bool) else str(k)): v for k, v in values.items()}
        return values


class EntityMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    source_id: str
    deleted_at: str = "deleted_at"
    required: tuple[str, ...] = ()
    fields: dict[str, FieldMapping]

    @property
    def source_columns(self) -> set[str]:
        return {self.source_id, self.deleted_at} | {f.source for f in self.fields.values() if f.source}


class Mapping(BaseModel):
    """One CRM's mapping file, validated. ``file`` is where it came from (for messages)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1, strict=True)
    crm: Literal["salesforce", "hubspot", "dynamics"]
    phone_region: str = "US"
    rollout: Literal["live", "shadow"] = "live"
    """``shadow``: this version is built next to the live tables only, until approved
    (``sync-platform mapping approve``); ``live``: a new version goes live by itself when its change
    impact is within the limits."""
    entities: dict[EntityName, EntityMapping]

    _file: str = PrivateAttr(default="<mapping>")

    @property
    def file(self) -> str:
        return self._file

    @property
    def fingerprint(self) -> str:
        """Hash of the content: a changed fingerprint under the same version is an unversioned change."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    def entity(self, name: str) -> EntityMapping:
        try:
            return self.entities[name]  # type: ignore[index]
        except KeyError:
            problem = f"{self.crm} has no mapping for {name}"
            raise MappingError(self.file, [(f"entities.{name}", problem)]) from None

    def required_fields(self, entity: str) -> tuple[str, ...]:
        """Canonical fields that must be filled on this CRM's live rows (model's and mapping's)."""
        model_required = tuple(f.name for f in ENTITIES[entity].fields if f.required)
        return tuple(dict.fromkeys(model_required + self.entity(entity).required))

    def sensitive_fields(self, entity: str) -> tuple[str, ...]:
        """Fields to encrypt at rest: the model's PII, plus any the mapping marks sensitive."""
        fields = self.entity(entity).fields
        return tuple(
            f.name
            for f in ENTITIES[entity].fields
            if f.pii or (f.name in fields and fields[f.name].sensitive)
        )


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when available: ~10x faster
    """A duplicated key is a typo that YAML would silently resolve to the last value."""


def _no_duplicate_keys(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def load_mapping(path: str | Path) -> Mapping:
    """Read, parse and check one mapping file; raise :class:`MappingError` on any problem.

    Parsed once per file version (path, size, modification time): definitions and assets ask for
    the mappings many times per run, and an edited file is read again.
    """
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise MappingError(str(path), [("(file)", f"cannot read: {exc.strerror}")]) from None
    return _load_mapping(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _load_mapping(file: str, _size: int, _mtime_ns: int) -> Mapping:
    path = file
    try:
        data = yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader)
    except OSError as exc:
        raise MappingError(file, [("(file)", f"cannot read: {exc.strerror}")]) from None
    except yaml.YAMLError as exc:
        raise MappingError(file, [("(yaml)", " ".join(str(exc).split()))]) from None
    return parse_mapping(data, file)


def parse_mapping(data: Any, file: str = "<mapping>") -> Mapping:
    """Check an already-parsed mapping document (``file`` only names it in messages)."""
    if not isinstance(data, dict):
        raise MappingError(file, [("(root)", "expected a YAML mapping with version, crm and entities")])
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        raise MappingError(file, [(_key_path(err["loc"]), err["msg"]) for err in exc.errors()]) from None
    mapping._file = file
    problems = list(_problems(mapping))
    if problems:
        raise MappingError(file, problems)
    return mapping


def load_mappings(directory: str | Path | None = None) -> dict[str, Mapping]:
    """Every ``*.yaml`` under the mappings directory, by CRM (one file per CRM)."""
    directory = Path(directory) if directory is not None else load_settings().mappings_dir
    mappings: dict[str, Mapping] = {}
    for path in sorted(directory.glob("*.yaml")):
        mapping = load_mapping(path)
        if mapping.crm in mappings:
            problem = f"{mapping.crm} is already mapped by {mappings[mapping.crm].file}"
            raise MappingError(str(path), [("crm", problem)])
        mappings[mapping.crm] = mapping
    return mappings


def _key_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "[key]") or "(root)"


def _problems(mapping: Mapping) -> Iterator[tuple[str, str]]:
    if PhoneMetadata.metadata_for_region(mapping.phone_region.upper()) is None:
        yield "phone_region", f"unknown region {mapping.phone_region!r} (an ISO 3166 code such as US or GB)"
    for entity_name, spec in mapping.entities.items():
        yield from _entity_problems(mapping, entity_name, spec)


def _entity_problems(mapping: Mapping, entity_name: str, spec: EntityMapping) -> Iterator[tuple[str, str]]:
    """One entity's table, key columns, fields and required fields."""
    entity = ENTITIES[entity_name]
    at = f"entities.{entity_name}"
    table = raw_table(mapping.crm, spec.table)
    if table is None:
        yield f"{at}.table", f"the {mapping.crm} source writes no table {spec.table!r}"
    known_columns = table.columns if table else None
    for key in ("source_id", "deleted_at"):
        column = getattr(spec, key)
        if known_columns is not None and column not in known_columns:
            yield f"{at}.{key}", _unknown_column(column, mapping.crm, spec.table, known_columns)
    for name, field_spec in spec.fields.items():
        yield from _field_problems(
            entity, name, field_spec, f"{at}.fields.{name}", mapping, spec, known_columns
        )
    yield from _required_problems(entity, spec, at)


def _required_problems(entity: Entity, spec: EntityMapping, at: str) -> Iterator[tuple[str, str]]:
    """``required:`` names canonical fields; every required field (the model's and these) is filled."""
    for i, name in enumerate(spec.required):
        if entity.field(name) is None:
            yield f"{at}.required.{i}", f"unknown canonical field {name!r} of {entity.name}"
    required = [f.name for f in entity.fields if f.required]
    for name in dict.fromkeys(required + [n for n in spec.required if entity.field(n)]):
        mapped = spec.fields.get(name)
        if mapped is None or (mapped.source is None and mapped.default is None):
            yield f"{at}.fields.{name}", f"required canonical field {name!r} has no source and no default"


def _field_problems(
    entity: Entity,
    name: str,
    spec: FieldMapping,
    at: str,
    mapping: Mapping,
    entity_spec: EntityMapping,
    known_columns: frozenset[str] | None,
) -> Iterator[tuple[str, str]]:
    if name in SYSTEM_COLUMNS:
        yield (
            at,
            f"{name!r} is a system column, filled by the engine (source_id: and deleted_at: name its source)",
        )
        return
    field = entity.field(name)
    if field is None:
        fields = ", ".join(entity.field_names)
        yield at, f"unknown canonical field {name!r} of {entity.name} (fields: {fields})"
        return
    yield from _reading_problems(spec, at, mapping, entity_spec, known_columns)
    yield from _format_problems(field, name, spec, at)
    read_as = "string" if spec.normalize is not None else spec.type
    if spec.values is None and read_as is not None and read_as not in _CONVERTIBLE[field.type]:
        yield f"{at}.type", f"bad type: cannot turn {read_as} into {name}, which is {field.type}"
    yield from _value_problems(field, spec, at)
    if spec.sensitive is False and field.pii:
        yield (
            f"{at}.sensitive",
            f"{name} is personal data in the canonical model; it cannot be marked not sensitive",
        )


def _reading_problems(
    spec: FieldMapping,
    at: str,
    mapping: Mapping,
    entity_spec: EntityMapping,
    known_columns: frozenset[str] | None,
) -> Iterator[tuple[str, str]]:
    """Where a field's value comes from: a source column that exists or a default, and what the
    value map, ``unmapped`` and ``normalize`` need."""
    if spec.source is None and spec.default is None:
        yield at, "neither a source column nor a default"
    if spec.source is not None and known_columns is not None and spec.source not in known_columns:
        yield f"{at}.source", _unknown_column(spec.source, mapping.crm, entity_spec.table, known_columns)
    if spec.values is not None and spec.source is None:
        yield f"{at}.values", "a value map needs a source column to read"
    if spec.unmapped is not None and spec.values is None:
        yield f"{at}.unmapped", "only means something with a value map (values:)"
    if spec.normalize is not None and spec.normalize not in NORMALIZERS:
        yield f"{at}.normalize", f"unknown normalizer {spec.normalize!r} (known: {', '.join(NORMALIZERS)})"


def _format_problems(
    field: CanonicalField, name: str, spec: FieldMapping, at: str
) -> Iterator[tuple[str, str]]:
    """A ``format:`` parses datetimes: the cast type and the canonical field are datetimes, and the
    format is a strptime format or an epoch unit."""
    if spec.format is not None and spec.type not in ("datetime", None):
        yield f"{at}.format", f"a format parses datetimes; the cast type is {spec.type}"
    if spec.format is not None and field.type != "datetime":
        yield f"{at}.format", f"a format parses datetimes; {name} is {field.type}"
    if spec.format is not None and spec.format not in EPOCH_FORMATS and "%" not in spec.format:
        yield (
            f"{at}.format",
            f"{spec.format!r} is neither a strptime format (%Y-%m-%d...) nor one of {EPOCH_FORMATS}",
        )


def _value_problems(field: CanonicalField, spec: FieldMapping, at: str) -> Iterator[tuple[str, str]]:
    targets = [(f"{at}.values.{raw}", value) for raw, value in (spec.values or {}).items()]
    targets += [
        (f"{at}.{key}", getattr(spec, key))
        for key in ("unmapped", "default")
        if getattr(spec, key) is not None
    ]
    for key, value in targets:
        problem = _not_a_value_of(field, value)
        if problem:
            yield key, problem


def _not_a_value_of(field: CanonicalField, value: str | bool) -> str | None:
    if field.type == "boolean":
        return None if isinstance(value, bool) else f"bad type: {field.name} is boolean, got {value!r}"
    if isinstance(value, bool):
        return f"bad type: {field.name} is {field.type}, got {value!r}"
    if field.enum is not None and value not in field.enum:
        return f"{value!r} is not a {field.name} (one of: {', '.join(field.enum)})"
    if field.type == "datetime":
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return f"bad type: {field.name} is a datetime, {value!r} is not ISO 8601"
    return None


def _unknown_column(column: str, crm: str, table: str, known: frozenset[str]) -> str:
    return f"column {column!r} is not in raw_{crm}.{table} (columns: {', '.join(sorted(known))})"
