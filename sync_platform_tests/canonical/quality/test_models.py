"""The pandera models describe exactly the canonical model: same columns, same dtypes."""

from __future__ import annotations

import pytest

from sync_platform.canonical.mapping import ENTITIES
from sync_platform.canonical.quality import MODELS

GOLDEN_IDS = {"contact": {"customer_id"}, "account": {"account_id"}, "interaction": set()}


@pytest.mark.parametrize("entity", list(ENTITIES))
def test_model_columns_and_dtypes_match_the_canonical_model(entity: str) -> None:
    columns = MODELS[entity].to_schema().columns
    assert set(columns) == set(ENTITIES[entity].columns) | GOLDEN_IDS[entity]
    for name, dtype in ENTITIES[entity].schema.items():
        assert columns[name].dtype.type == dtype, name
    required = {f.name for f in ENTITIES[entity].fields if f.required}
    not_nullable = {name for name, column in columns.items() if not column.nullable}
    assert not_nullable == required | {"source_system", "source_id", "mapping_version"}
