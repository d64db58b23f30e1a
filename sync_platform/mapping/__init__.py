"""The canonical customer model and the config-driven mapping from each CRM's raw tables (no Dagster imports).

- ``model``: the canonical entities (Contact, Account, Interaction), their fields, types and enums.
- ``loader``: mapping files (``data/mappings/<crm>.yaml``) validated at load time (``MappingError``).
- ``engine``: ``apply_mapping`` (vectorized polars) and the data-time ``check_value_maps``.
- ``identity``: golden ids across CRMs (``customer_id``, ``account_id``) and the duplicate report.
- ``sandbox_raw``: raw frames from the sandbox generator, and its true cross-CRM duplicate pairs.
"""

from .engine import MappedResult, ValueMapGap, apply_mapping, check_value_maps
from .identity import (
    DuplicateReport,
    MatchRule,
    duplicate_report,
    golden_account_ids,
    golden_contact_ids,
    link_golden_ids,
)
from .loader import Mapping, MappingError, load_mapping, load_mappings, parse_mapping
from .model import ENTITIES

__all__ = [
    "ENTITIES", "DuplicateReport", "MappedResult", "Mapping", "MappingError", "MatchRule", "ValueMapGap",
    "apply_mapping", "check_value_maps", "duplicate_report", "golden_account_ids", "golden_contact_ids",
    "link_golden_ids", "load_mapping", "load_mappings", "parse_mapping",
]
