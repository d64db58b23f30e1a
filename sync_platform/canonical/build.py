"""Build one canonical entity from every CRM's raw table: map, resolve identities, validate.

Pure of Dagster: ``defs/canonical`` reads the raw tables, calls :func:`build_entity`, and decides
from the outcome whether the canonical table may be replaced (the blast-radius gate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from sync_platform.canonical.identity import golden_account_ids, golden_contact_ids, link_golden_ids
from sync_platform.canonical.mapping.engine import MappedResult, apply_mapping
from sync_platform.canonical.mapping.loader import Mapping
from sync_platform.canonical.model import ENTITY_TABLES
from sync_platform.canonical.quality.validate import ValidationOutcome, referential_failures, validate_entity


class Suppression(Protocol):
    """Who must never reach canonical data (erasure requests). The build asks only this, so it
    does not depend on how erasure stores or decides it."""

    def exclude(self, entity: str, frame: pl.DataFrame) -> pl.DataFrame: ...


GOLDEN = {"account": golden_account_ids, "contact": golden_contact_ids}


@dataclass
class EntityBuild:
    entity: str
    outcome: ValidationOutcome
    mapped: dict[str, MappedResult] = field(default_factory=dict)

    @property
    def versions(self) -> dict[str, int]:
        return {crm: m.mapping_version for crm, m in self.mapped.items()}


def build_entity(
    entity: str,
    raw: dict[str, pl.DataFrame],
    mappings: dict[str, Mapping],
    parent: pl.DataFrame | None = None,
    parent_quarantined: pl.DataFrame | None = None,
    erased: Suppression | None = None,
) -> EntityBuild:
    """Map each CRM's raw rows, add golden ids, validate, and check links to ``parent`` (canonical rows).

    A link to a parent that exists at the source but sits in quarantine is not dangling
    (``parent_quarantined`` keys): one bad contact email must not cascade into its cases.
    People under an erasure request (``erased``) are dropped right after mapping, before anything
    (quarantine included) can hold them.
    """
    mapped = {crm: apply_mapping(mappings[crm], entity, frame) for crm, frame in raw.items()}
    frame = (
        pl.concat([m.frame for m in mapped.values()], how="diagonal_relaxed") if mapped else pl.DataFrame()
    )
    if erased is not None:
        frame = erased.exclude(entity, frame)
    if entity in GOLDEN and frame.height:
        frame = GOLDEN[entity](frame)
    _, link = ENTITY_TABLES[entity]
    if link is not None and parent is not None and frame.height:
        _, column, golden = link
        if golden in parent.columns:
            frame = link_golden_ids(frame, parent, column, golden)
    required = {crm: mappings[crm].required_fields(entity) for crm in mapped}
    outcome = validate_entity(entity, frame, required=required)
    if link is not None and parent is not None and frame.height:
        known = parent.select(
            "source_system", "source_id", *(["deleted_at"] if "deleted_at" in parent.columns else [])
        )
        if parent_quarantined is not None and parent_quarantined.height:
            known = pl.concat(
                [known, parent_quarantined.select("source_system", "source_id")], how="diagonal_relaxed"
            )
        outcome = outcome.with_failures(referential_failures(frame, known, link[1]))
    return EntityBuild(entity, outcome, mapped)
