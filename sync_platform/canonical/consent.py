"""Consent: which canonical contacts may be shared downstream.

Policy (``canonical.contacts_shareable`` is the only contact table other systems may read):

1. **deleted** at the CRM: never shared;
2. **opted out**: the CRM's own flag (Salesforce ``HasOptedOutOfEmail``, HubSpot
   ``hs_email_optout``, Dynamics ``donotemail``, mapped to ``email_opt_out``) excludes the
   **person**, not only the record: an opt-out in one CRM excludes their records in every CRM
   (same golden ``customer_id``). An unknown flag counts as an opt-out;
3. **erased**: a person under an erasure request is never shared (they are already gone from
   ``canonical.contacts``; the suppression list is checked again here as a second lock).

Sensitive columns stay encrypted in the shareable table: a consumer decrypts with its own copy
of the key (``decrypt_frame``), so sharing a table never means sharing clear personal data.
"""

from __future__ import annotations

import polars as pl


def shareable_contacts(contacts: pl.DataFrame, erased: pl.DataFrame | None = None) -> pl.DataFrame:
    """The contacts the policy above lets through; ``erased`` holds suppressed (source_system, source_id)."""
    live = contacts.filter(pl.col("deleted_at").is_null()) if "deleted_at" in contacts.columns else contacts
    opted_out = pl.col("email_opt_out").fill_null(True)
    if "customer_id" in contacts.columns:
        people = contacts.filter(opted_out).select("customer_id").unique()
        live = live.join(people, on="customer_id", how="anti")
    else:
        live = live.filter(~opted_out)
    if erased is not None and erased.height:
        live = live.join(
            erased.select("source_system", "source_id"), on=["source_system", "source_id"], how="anti"
        )
    return live


def consent_counts(contacts: pl.DataFrame, shareable: pl.DataFrame) -> dict[str, int]:
    """Why contacts were held back, for the asset's metadata."""
    live = contacts.filter(pl.col("deleted_at").is_null()) if "deleted_at" in contacts.columns else contacts
    return {
        "contacts": contacts.height,
        "live": live.height,
        "shareable": shareable.height,
        "opted_out_records": int(live["email_opt_out"].fill_null(True).sum()) if live.height else 0,
        "withheld": live.height - shareable.height,
    }
