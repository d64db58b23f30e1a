"""pandera (polars backend) models of the canonical entities: the quality gate of each table.

Kept in step with ``sync_platform.canonical.model`` (a test compares them field by field). They judge
live rows; deleted rows carry only their key (Dataverse tombstones) and are judged by
:class:`TombstoneModel`. No ``from __future__ import annotations`` here: pandera resolves these
annotations at runtime.
"""

from typing import Annotated

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from sync_platform.canonical.model import (
    E164_PATTERN,
    EMAIL_PATTERN,
    INTERACTION_STATUSES,
    LIFECYCLE_STAGES,
    PRIORITIES,
    SOURCE_SYSTEMS,
)

# a type, not a dtype instance (pl.Datetime("us", "UTC")), so that ``UtcDatetime | None`` (an
# optional column) can be written; pandera builds the same dtype from the Annotated arguments
UtcDatetime = Annotated[pl.Datetime, "us", "UTC"]


class TombstoneModel(pa.DataFrameModel):
    """What every canonical row needs, deleted or not: its key, unique, and the mapping version."""

    source_system: str = pa.Field(isin=list(SOURCE_SYSTEMS))
    source_id: str = pa.Field(str_length={"min_value": 1})
    deleted_at: UtcDatetime | None = pa.Field(nullable=True)
    mapping_version: pl.Int64 = pa.Field(ge=1)
    source_load_id: str | None = pa.Field(nullable=True)  # lineage only: no rule

    class Config:
        unique = ["source_system", "source_id"]
        strict = False


class CanonicalModel(TombstoneModel):
    """Rules every live canonical row follows, whatever the entity."""

    updated_at: UtcDatetime


class _CreatedModel(CanonicalModel):
    """Contacts and accounts: created in the CRM no later than their last change."""

    created_at: UtcDatetime = pa.Field(nullable=True)

    @pa.dataframe_check(name="created_not_after_updated")
    def created_not_after_updated(cls, data: PolarsData) -> pl.LazyFrame:
        created = pl.col("created_at")
        return data.lazyframe.select(created.is_null() | (created <= pl.col("updated_at")))


class ContactModel(_CreatedModel):
    customer_id: str | None = pa.Field(nullable=True)  # golden id, once identity resolution ran
    email: str = pa.Field(nullable=True)
    first_name: str = pa.Field(nullable=True)
    last_name: str = pa.Field(nullable=True)
    phone: str = pa.Field(nullable=True)
    title: str = pa.Field(nullable=True)
    account_source_id: str = pa.Field(nullable=True)
    lifecycle_stage: str = pa.Field(isin=list(LIFECYCLE_STAGES))
    email_opt_out: bool

    @pa.check("email", name="email_format")
    def email_format(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).str.contains(EMAIL_PATTERN))

    @pa.check("phone", name="phone_e164")
    def phone_e164(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).str.contains(E164_PATTERN))


class AccountModel(_CreatedModel):
    account_id: str | None = pa.Field(nullable=True)  # golden id, once identity resolution ran
    name: str = pa.Field(str_length={"min_value": 1})
    domain: str = pa.Field(nullable=True)
    industry: str = pa.Field(nullable=True)
    country: str = pa.Field(nullable=True)
    phone: str = pa.Field(nullable=True)

    @pa.check("domain", name="domain_format")
    def domain_format(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).str.contains(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$"))

    @pa.check("phone", name="phone_e164")
    def phone_e164(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).str.contains(E164_PATTERN))


class InteractionModel(CanonicalModel):
    case_number: str = pa.Field(nullable=True)
    subject: str = pa.Field(nullable=True)
    status: str = pa.Field(isin=list(INTERACTION_STATUSES))
    priority: str = pa.Field(nullable=True, isin=list(PRIORITIES))
    contact_source_id: str = pa.Field(nullable=True)
    account_source_id: str = pa.Field(nullable=True)
    opened_at: UtcDatetime
    closed_at: UtcDatetime = pa.Field(nullable=True)

    @pa.dataframe_check(name="opened_not_after_updated")
    def opened_not_after_updated(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("opened_at") <= pl.col("updated_at"))

    @pa.dataframe_check(name="closed_has_closed_at")
    def closed_has_closed_at(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("status") != "closed") | pl.col("closed_at").is_not_null())

    @pa.dataframe_check(name="closed_not_before_opened")
    def closed_not_before_opened(cls, data: PolarsData) -> pl.LazyFrame:
        closed = pl.col("closed_at")
        return data.lazyframe.select(closed.is_null() | (closed >= pl.col("opened_at")))


MODELS: dict[str, type[CanonicalModel]] = {
    "contact": ContactModel,
    "account": AccountModel,
    "interaction": InteractionModel,
}

DATAFRAME_CHECK_COLUMNS = {
    # the column a row-level rule judges: the value a reviewer needs to see
    "created_not_after_updated": "created_at",
    "opened_not_after_updated": "opened_at",
    "closed_has_closed_at": "closed_at",
    "closed_not_before_opened": "closed_at",
    "multiple_fields_uniqueness": "source_id",
}
