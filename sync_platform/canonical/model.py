"""The canonical customer model: one declaration of every entity, field, type and enum.

Mappings (``data/mappings/<crm>.yaml``) fill these fields from each CRM's raw tables; the quality
models (``sync_platform.canonical.quality.models``) check them. Both are derived from, or tested against,
this module, so a field exists in exactly one place.

Enums, and what each CRM value becomes (the per-CRM tables live in the mapping files):

- ``lifecycle_stage``: ``lead`` (known, not yet qualified: HubSpot subscriber/lead/MQL),
  ``prospect`` (qualified, in an active sales motion: HubSpot SQL/opportunity, Salesforce
  "Prospect"), ``customer`` (paying: HubSpot customer/evangelist, Salesforce "Active"),
  ``churned`` (a former customer: Salesforce "Churned"/"Former"), ``other`` (anything else, and
  CRMs without a lifecycle field, such as Dynamics contacts).
- ``status`` of an interaction: ``open`` (someone on our side must act), ``pending`` (waiting on
  the customer or a third party), ``closed`` (resolved, cancelled or merged).
- ``priority``: ``low``, ``medium``, ``high`` (HubSpot "URGENT" folds into ``high``).

Every canonical row also carries the system columns ``source_system``, ``source_id`` (the CRM's
immutable id: the key is the pair), ``deleted_at`` (soft delete, carried from the raw row) and
``mapping_version`` (the version of the mapping file that produced the row) and ``source_load_id``
(the dlt load that last wrote the raw row: unchanged means the CRM did not touch the record, so the
change-impact gate can tell a change the configuration made from one the CRM made).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

FieldType = Literal["string", "boolean", "datetime"]

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "boolean": pl.Boolean(),
    "datetime": pl.Datetime("us", "UTC"),
}

SOURCE_SYSTEMS = ("salesforce", "hubspot", "dynamics")
LIFECYCLE_STAGES = ("lead", "prospect", "customer", "churned", "other")
INTERACTION_STATUSES = ("open", "pending", "closed")
PRIORITIES = ("low", "medium", "high")

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
E164_PATTERN = r"^\+[1-9]\d{6,14}$"


@dataclass(frozen=True)
class Field:
    """One canonical field.

    ``required`` fields must be non-null on every live row, whatever the CRM; a mapping can require
    more for its own CRM. ``pii`` fields are always sensitive (encrypted at rest, masked in logs):
    a mapping may mark more fields sensitive, never fewer.
    """

    name: str
    type: FieldType
    description: str
    required: bool = False
    pii: bool = False
    enum: tuple[str, ...] | None = None

    @property
    def dtype(self) -> pl.DataType:
        return POLARS_TYPES[self.type]


@dataclass(frozen=True)
class Entity:
    name: str
    description: str
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def columns(self) -> tuple[str, ...]:
        """Column order of the canonical frame: key, entity fields, system columns."""
        return ("source_system", "source_id", *self.field_names, *SYSTEM_COLUMNS[2:])

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {
            "source_system": pl.String(),
            "source_id": pl.String(),
            **{f.name: f.dtype for f in self.fields},
            "deleted_at": pl.Datetime("us", "UTC"),
            "mapping_version": pl.Int64(),
            "source_load_id": pl.String(),
        }


SYSTEM_COLUMNS = ("source_system", "source_id", "deleted_at", "mapping_version", "source_load_id")

CONTACT = Entity(
    "contact",
    "A person at a customer or prospect.",
    (
        Field("email", "string", "Trimmed, lower-cased email address.", pii=True),
        Field("first_name", "string", "Given name, trimmed, inner spaces collapsed.", pii=True),
        Field("last_name", "string", "Family name, trimmed, inner spaces collapsed.", pii=True),
        Field(
            "phone",
            "string",
            "E.164 phone number (+14155550123); null if the CRM value is not a number.",
            pii=True,
        ),
        Field("title", "string", "Job title."),
        Field("account_source_id", "string", "The CRM's id of the contact's account (same source_system)."),
        Field(
            "lifecycle_stage",
            "string",
            "Where the person is in the customer lifecycle.",
            required=True,
            enum=LIFECYCLE_STAGES,
        ),
        Field(
            "email_opt_out", "boolean", "The person opted out of email (the CRM's own flag).", required=True
        ),
        Field("created_at", "datetime", "Created in the CRM (UTC)."),
        Field("updated_at", "datetime", "Last change in the CRM, any kind (UTC).", required=True),
    ),
)

ACCOUNT = Entity(
    "account",
    "A company: customer, prospect or partner.",
    (
        Field("name", "string", "Company name, trimmed, inner spaces collapsed.", required=True),
        Field("domain", "string", "Web domain without scheme, www. or path (acme.com)."),
        Field("industry", "string", "Industry as the CRM names it."),
        Field(
            "country", "string", "Country, upper-cased as the CRM holds it (ISO 3166 alpha-2 in the sandbox)."
        ),
        Field("phone", "string", "E.164 switchboard number."),
        Field("created_at", "datetime", "Created in the CRM (UTC)."),
        Field("updated_at", "datetime", "Last change in the CRM, any kind (UTC).", required=True),
    ),
)

INTERACTION = Entity(
    "interaction",
    "A support case, ticket or incident.",
    (
        Field("case_number", "string", "The human-facing number, where the CRM has one."),
        Field("subject", "string", "Title of the case."),
        Field("status", "string", "Where the case stands.", required=True, enum=INTERACTION_STATUSES),
        Field("priority", "string", "How urgent the case is.", enum=PRIORITIES),
        Field(
            "contact_source_id", "string", "The CRM's id of the contact who raised it (same source_system)."
        ),
        Field("account_source_id", "string", "The CRM's id of the account (same source_system)."),
        Field("opened_at", "datetime", "Opened in the CRM (UTC).", required=True),
        Field("closed_at", "datetime", "Closed or resolved (UTC); required once status is closed."),
        Field("updated_at", "datetime", "Last change in the CRM, any kind (UTC).", required=True),
    ),
)

ENTITIES: dict[str, Entity] = {e.name: e for e in (CONTACT, ACCOUNT, INTERACTION)}

# canonical entity -> (warehouse table in schema ``canonical``, the parent it references:
# (parent entity, link column, golden id column)); the build, the gates and the protection read it
ENTITY_TABLES: dict[str, tuple[str, tuple[str, str, str] | None]] = {
    "account": ("accounts", None),
    "contact": ("contacts", ("account", "account_source_id", "account_id")),
    "interaction": ("interactions", ("contact", "contact_source_id", "customer_id")),
}
