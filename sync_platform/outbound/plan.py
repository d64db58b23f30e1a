"""From a change in canonical terms to one write per CRM, through the mapping files read backwards.

The mapping that reads a CRM field into a canonical field is the one that writes it back: the raw
column it names is the CRM field (``raw_column`` inverted), and a value map is read from right to
left. No code per CRM. Rules of the way back:

- a value map sends a canonical value to the **first** CRM value listed for it (``churned`` goes
  to ``Churned``, not ``Former``); a value no entry maps to is refused;
- normalizers are not undone: the canonical spelling is written (an E.164 phone, a lower-case
  email), which every CRM accepts;
- a field the CRM sets itself (``created_at``, ``updated_at``, a case number), a field filled only
  by a ``default``, and links between records (``*_source_id``) are refused with the reason;
- a change with any refused field is refused for that CRM as a whole: half a change is a change
  nobody asked for.

Targets: a golden id (``customer_id``/``account_id``) reaches every CRM that holds a live record
with it; ``<crm>:<record id>`` reaches that record; no target creates the record in the CRM that
``outbound.create_in`` names for the entity, as an upsert on a key derived from the ``change_id``,
so sending it again updates the record it created instead of creating another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from sync_platform.canonical.mapping.live_check import LiveProblem, MetadataReader
from sync_platform.canonical.mapping.loader import Mapping
from sync_platform.canonical.model import ENTITY_TABLES
from sync_platform.core.config import OutboundConfig
from sync_platform.core.sql import ident, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.raw_schema import RAW_TABLES, raw_column
from sync_platform.outbound.store import Change
from sync_platform.outbound.writes import Write

SET_BY_THE_CRM = frozenset({"created_at", "updated_at", "opened_at", "closed_at", "case_number"})
GOLDEN_ID = {"contact": "customer_id", "account": "account_id"}

# The unique field a create upserts on, per CRM and entity: an external id the platform owns
# (``derived``), or a unique property of the record itself (HubSpot's email and domain).
CREATE_KEYS: dict[tuple[str, str], tuple[str, bool]] = {
    ("salesforce", "contact"): ("External_Id__c", True),
    ("salesforce", "account"): ("External_Id__c", True),
    ("salesforce", "interaction"): ("External_Id__c", True),
    ("hubspot", "contact"): ("email", False),
    ("hubspot", "account"): ("domain", False),
    ("dynamics", "contact"): ("externalid", True),
    ("dynamics", "account"): ("accountnumber", True),
}


@dataclass(frozen=True)
class Planned:
    """One change for one CRM: a write to send, or the reason it cannot be sent."""

    change_id: str
    crm: str
    crm_object: str
    write: Write | None = None
    refused: str | None = None
    crm_fields: tuple[str, ...] = ()


@dataclass
class Plan:
    planned: list[Planned] = field(default_factory=list)
    unknown_targets: list[str] = field(default_factory=list)  # change ids whose target holds no record


def derived_key(change_id: str) -> str:
    """The external id a create carries: stable per change, short, and safe in any URL or filter."""
    return "sp-" + hashlib.blake2b(change_id.encode(), digest_size=10).hexdigest()


class ReverseMapping:
    """One CRM's mapping file, read from canonical to CRM."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.crm = mapping.crm

    def crm_object(self, entity: str) -> str:
        return RAW_TABLES[self.crm][self.mapping.entities[entity].table].crm_object

    def values(self, entity: str, fields: MappingType[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """CRM field -> value for ``fields``; and canonical field -> reason for each refused one."""
        entity_map = self.mapping.entities.get(entity)
        if entity_map is None:
            return {}, {"*": f"the {self.crm} mapping has no {entity}"}
        columns = {raw_column(name): name for name in RAW_TABLES[self.crm][entity_map.table].fields}
        out: dict[str, Any] = {}
        refused: dict[str, str] = {}
        for name, value in fields.items():
            spec = entity_map.fields.get(name)
            if spec is None:
                refused[name] = f"not a field of the canonical {entity}"
            elif name in SET_BY_THE_CRM:
                refused[name] = "set by the CRM itself"
            elif name.endswith("_source_id"):
                refused[name] = "links between records are not written back"
            elif spec.source is None or spec.source not in columns:
                refused[name] = f"{self.crm} has no field it is read from (default only)"
            else:
                crm_value, why = self._value(spec.values, value)
                if why:
                    refused[name] = why
                else:
                    out[columns[spec.source]] = _as_crm_type(self.crm, crm_value)
        return out, refused

    def _value(self, values: MappingType[str, Any] | None, value: Any) -> tuple[Any, str | None]:
        if not values or value is None:
            return value, None
        for crm_value, canonical in values.items():  # the first listed wins
            if canonical == value:
                return crm_value, None
        return None, f"no {self.crm} value maps to {value!r}"


def _as_crm_type(crm: str, value: Any) -> Any:
    """HubSpot's properties are strings on the wire (booleans as "true"/"false")."""
    if crm != "hubspot" or value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def plan_changes(
    warehouse: Warehouse,
    changes: list[Change],
    mappings: dict[str, Mapping],
    config: OutboundConfig,
    done: set[tuple[str, str]],
) -> Plan:
    """One :class:`Planned` per change and target CRM not in ``done`` (changes already answered)."""
    plan = Plan()
    reverse = {crm: ReverseMapping(m) for crm, m in mappings.items()}
    holders = _holders(warehouse, [c for c in changes if c.target and ":" not in c.target])
    for change in changes:
        if change.target is None:
            owner = config.create_in.get(change.entity)  # type: ignore[call-overload]
            targets: list[tuple[str, str | None]] = [(owner, None)] if owner else []
            if not owner:
                plan.unknown_targets.append(change.change_id)
        elif ":" in change.target and change.target.split(":", 1)[0] in RAW_TABLES:
            crm, record_id = change.target.split(":", 1)
            targets = [(crm, record_id)]
        else:
            targets = holders.get((change.entity, change.target), [])
            if not targets:
                plan.unknown_targets.append(change.change_id)
        for crm, record_id in targets:
            if (change.change_id, crm) in done:
                continue
            plan.planned.append(_plan_one(change, crm, record_id, reverse.get(crm)))
    return plan


def _plan_one(change: Change, crm: str, record_id: str | None, reverse: ReverseMapping | None) -> Planned:
    if reverse is None or change.entity not in reverse.mapping.entities:
        return Planned(change.change_id, crm, "?", refused=f"no {crm} mapping for {change.entity}")
    crm_object = reverse.crm_object(change.entity)
    values, refused = reverse.values(change.entity, change.fields)
    if refused:
        reasons = "; ".join(f"{name}: {why}" for name, why in sorted(refused.items()))
        return Planned(change.change_id, crm, crm_object, refused=f"not writable to {crm}: {reasons}")
    if record_id is not None:
        write = Write(change.change_id, crm_object, values, record_id=record_id)
        return Planned(change.change_id, crm, crm_object, write, crm_fields=tuple(sorted(values)))
    key = CREATE_KEYS.get((crm, change.entity))
    if key is None:
        return Planned(
            change.change_id,
            crm,
            crm_object,
            refused=f"{crm} has no unique key to create a {change.entity} on",
        )
    key_field, derived = key
    key_value = derived_key(change.change_id) if derived else values.get(key_field)
    if not key_value:
        return Planned(
            change.change_id,
            crm,
            crm_object,
            refused=f"{crm} creates a {change.entity} by {key_field}: none given",
        )
    values = {**values, key_field: key_value}
    write = Write(change.change_id, crm_object, values, upsert_key=(key_field, str(key_value)))
    return Planned(change.change_id, crm, crm_object, write, crm_fields=tuple(sorted(values)))


def _holders(
    warehouse: Warehouse, changes: list[Change]
) -> dict[tuple[str, str], list[tuple[str, str | None]]]:
    """(entity, golden id) -> the live (crm, record id) pairs that carry it in the canonical tables."""
    found: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for entity in {c.entity for c in changes}:
        column = GOLDEN_ID.get(entity)
        table = ENTITY_TABLES[entity][0]
        if column is None or not warehouse.table_exists("canonical", table):
            continue
        wanted = sorted({c.target for c in changes if c.entity == entity and c.target})
        frame = warehouse.read_frame(
            sql(
                "SELECT {golden}, source_system, source_id FROM {table} WHERE deleted_at IS NULL "
                "ORDER BY source_system, source_id",
                golden=ident(column),
                table=ident("canonical", table),
            )
        ).filter(pl.col(column).is_in(wanted))
        for golden, crm, record_id in frame.iter_rows():
            found.setdefault((entity, golden), []).append((crm, record_id))
    return found


def writeback_problems(mapping: Mapping, reader: MetadataReader) -> list[LiveProblem]:
    """Mapped fields write-back would set that the CRM's metadata says cannot be written (read-only,
    formula, system): refused by ``mapping check`` before any write is attempted."""
    problems = []
    for entity, spec in mapping.entities.items():
        table = RAW_TABLES[mapping.crm].get(spec.table)
        if table is None:
            continue
        columns = {raw_column(name): name for name in table.fields}
        for name, field_spec in spec.fields.items():
            if name in SET_BY_THE_CRM or name.endswith("_source_id") or field_spec.source not in columns:
                continue
            crm_field = columns[field_spec.source]
            found = reader.lookup(table.crm_object, crm_field)
            if found is not None and found.readable and not found.writable:
                problems.append(
                    LiveProblem(
                        mapping.file,
                        f"entities.{entity}.fields.{name}.source",
                        f"{mapping.crm} {table.crm_object} field {crm_field!r} is read-only: write-back "
                        f"could not set {entity}.{name} (map it from a writable field)",
                    )
                )
    return problems
