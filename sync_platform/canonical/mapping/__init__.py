"""The canonical customer model and the config-driven mapping from each CRM's raw tables (no Dagster imports).

- ``loader``: mapping files (``data/mappings/<crm>.yaml``) validated at load time (``MappingError``).
- ``engine``: ``apply_mapping`` (vectorized polars) and the data-time ``check_value_maps``.
"""

from sync_platform.canonical.identity import (
    DuplicateReport,
    MatchRule,
    duplicate_report,
    golden_account_ids,
    golden_contact_ids,
    link_golden_ids,
)
from sync_platform.canonical.mapping.engine import MappedResult, ValueMapGap, apply_mapping, check_value_maps
from sync_platform.canonical.mapping.loader import (
    Mapping,
    MappingError,
    load_mapping,
    load_mappings,
    parse_mapping,
)
from sync_platform.canonical.model import ENTITIES

__all__ = [
    "ENTITIES",
    "DuplicateReport",
    "MappedResult",
    "Mapping",
    "MappingError",
    "MatchRule",
    "ValueMapGap",
    "apply_mapping",
    "check_value_maps",
    "duplicate_report",
    "golden_account_ids",
    "golden_contact_ids",
    "link_golden_ids",
    "load_mapping",
    "load_mappings",
    "parse_mapping",
]
