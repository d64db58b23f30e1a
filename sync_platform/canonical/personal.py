"""Which raw columns hold personal values, and how a raw value may be shown to a person.

Shared by the command line (``history``, ``outbound conflicts list``, ``restore``) and the review
page: a column feeding a personal or sensitive canonical field (per the mappings) is masked whole;
any other text has the emails and phone numbers in it masked.
"""

from __future__ import annotations

from sync_platform.canonical.mapping.loader import load_mappings
from sync_platform.canonical.model import ENTITIES
from sync_platform.security.redaction import mask_value, redact_text


def personal_columns(crm: str) -> set[str]:
    """Raw columns of ``crm`` that feed personal or sensitive canonical fields (per the mappings)."""
    mapping = load_mappings().get(crm)
    if mapping is None:
        return set()
    found = set()
    for entity, spec in mapping.entities.items():
        sensitive = set(mapping.sensitive_fields(entity)) | {f.name for f in ENTITIES[entity].fields if f.pii}
        found |= {f.source for name, f in spec.fields.items() if name in sensitive and f.source}
    return found


def shown(column: str, value: object, personal: set[str] | None) -> object:
    """A value as shown: as is when ``personal`` is None (decrypted on purpose), else masked."""
    if personal is None or value is None or isinstance(value, bool | int | float):
        return value
    return mask_value("name", value) if column in personal else redact_text(str(value))
