"""Quality gates of the canonical tables: pandera models, the good/rejected split (no Dagster imports)."""

from .models import MODELS, AccountModel, ContactModel, InteractionModel, TombstoneModel
from .validate import ValidationOutcome, referential_failures, validate_entity

__all__ = ["MODELS", "AccountModel", "ContactModel", "InteractionModel", "TombstoneModel",
           "ValidationOutcome", "referential_failures", "validate_entity"]
