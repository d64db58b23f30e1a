"""Which canonical columns are encrypted at rest, and the table-level operations on them.

A column is sensitive when the canonical model marks the field ``pii`` (contact email, names,
phone) or **any** mapping marks it ``sensitive: true``: one CRM cannot leave in clear a column
another encrypts, so the whole column is ciphertext or none of it is. Encryption happens after
the quality gate (formats, identities and duplicates need the clear values) and just before the
table is written; the golden ids are already computed by then.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingOf

import polars as pl

from sync_platform.canonical.history import HISTORY
from sync_platform.canonical.mapping.loader import Mapping, load_mappings
from sync_platform.canonical.model import ENTITIES as MODEL
from sync_platform.canonical.model import ENTITY_TABLES
from sync_platform.core.sql import ident, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.security.encryption import (
    FieldCipher,
    decrypt_frame,
    encrypt_frame,
    field_cipher,
    rotate_frame,
)

DATASET = "canonical"
SHAREABLE_TABLE = "contacts_shareable"
# canonical table -> the entity whose columns it holds
TABLE_ENTITIES: dict[str, str] = {table: entity for entity, (table, _) in ENTITY_TABLES.items()} | {
    SHAREABLE_TABLE: "contact"
}


def sensitive_columns(entity: str, mappings: MappingOf[str, Mapping] | None = None) -> tuple[str, ...]:
    """Sensitive columns of ``entity`` across every mapping, in the model's column order."""
    mappings = load_mappings() if mappings is None else mappings
    marked = {name for m in mappings.values() if entity in m.entities for name in m.sensitive_fields(entity)}
    marked |= {f.name for f in MODEL[entity].fields if f.pii}
    return tuple(f.name for f in MODEL[entity].fields if f.name in marked)


def protect(
    frame: pl.DataFrame, entity: str, mappings: MappingOf[str, Mapping], cipher: FieldCipher | None = None
) -> pl.DataFrame:
    """``frame`` ready to be written: sensitive columns encrypted (a local key is created for the
    embedded default on first use)."""
    columns = sensitive_columns(entity, mappings)
    if not columns or frame.is_empty():
        return frame
    return encrypt_frame(frame, columns, cipher or field_cipher(create_if_missing=True))


def read_table(
    warehouse: Warehouse,
    table: str,
    *,
    decrypt: bool = False,
    limit: int | None = None,
    cipher: FieldCipher | None = None,
) -> pl.DataFrame:
    """A canonical table; with ``decrypt`` its sensitive columns in clear (needs the key)."""
    entity = TABLE_ENTITIES[table]
    statement = sql("SELECT * FROM {table} ORDER BY source_system, source_id", table=ident(DATASET, table))
    if limit is None:
        frame = warehouse.read_frame(statement)
    else:
        frame = warehouse.read_frame(sql("{statement} LIMIT ?", statement=statement), [int(limit)])
    if decrypt:
        frame = decrypt_frame(frame, sensitive_columns(entity), cipher)
    return frame


def rotate_tables(warehouse: Warehouse, cipher: FieldCipher | None = None) -> dict[str, int]:
    """Re-encrypt every canonical table's sensitive values under the newest key, kept builds included
    (a restore must not bring back values only a retired key opens).

    Values already under it are left as they are. Returns rows rewritten per table. Run it while no
    canonical build runs (both replace whole tables).
    """
    cipher = cipher or field_cipher()
    mappings = load_mappings()
    rewritten: dict[str, int] = {}
    for schema in (DATASET, HISTORY):
        for table, entity in TABLE_ENTITIES.items():
            columns = sensitive_columns(entity, mappings)
            if not columns or not warehouse.table_exists(schema, table):
                continue
            frame = warehouse.read_frame(sql("SELECT * FROM {table}", table=ident(schema, table)))
            rotated = rotate_frame(frame, columns, cipher)
            changed = sum(
                int((frame[c] != rotated[c]).fill_null(False).sum()) for c in columns if c in frame.columns
            )
            if changed:
                warehouse.write_frame(rotated.select(frame.columns), schema, table)
            rewritten[table if schema == DATASET else f"{schema}.{table}"] = changed
    return rewritten
