"""Quality gates of the canonical tables: pandera models, the good/rejected split (no Dagster imports)."""

from sync_platform.canonical.quality.models import (
    MODELS,
    AccountModel,
    ContactModel,
    InteractionModel,
    TombstoneModel,
)
from sync_platform.canonical.quality.validate import ValidationOutcome, referential_failures, validate_entity

__all__ = [
    "MODELS",
    "AccountModel",
    "ContactModel",
    "InteractionModel",
    "TombstoneModel",
    "ValidationOutcome",
    "referential_failures",
    "validate_entity",
]
