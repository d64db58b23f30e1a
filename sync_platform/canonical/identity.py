"""Identity resolution: a stable golden id linking the records of one person (or company) across CRMs.

The rule is an ordered list of :class:`MatchRule`\\ s, each a polars expression giving a match key
(null: this rule cannot match the record). A record's group is decided by the **first rule that
yields a key**; records sharing that key share the golden id. A record no rule matches is a group
of its own, keyed by ``source_system:source_id``. The golden id is a hash of the rule name and key,
so it is deterministic across runs and machines and needs no id table. Swap the rules to change
the policy (e.g. add a phone + last-name rule after email).

Defaults:

- contacts (``customer_id``): the normalized email (trimmed, lower-cased by the mapping) when it is
  a usable address (matches the email format). Shared inboxes merge people; a changed email moves
  the record to another id. Both are the price of an exact, explainable rule.
- accounts (``account_id``): the normalized domain, else the normalized company name (lower-case,
  punctuation removed, legal suffix such as Inc/Ltd/GmbH dropped). A record is grouped by its
  domain whenever it has one, so an account with a domain and another with only the same name
  stay apart: the rules are ordered, not transitive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from sync_platform.canonical.model import EMAIL_PATTERN

LEGAL_SUFFIXES = (
    "inc",
    "incorporated",
    "ltd",
    "limited",
    "llc",
    "gmbh",
    "ag",
    "sa",
    "sas",
    "bv",
    "nv",
    "plc",
    "corp",
    "corporation",
    "co",
    "company",
    "srl",
    "spa",
    "pty",
    "oy",
    "ab",
    "as",
    "kk",
)


@dataclass(frozen=True, eq=False)
class MatchRule:
    name: str
    key: pl.Expr  # the match key, or null when this rule cannot match the record


def usable_email() -> pl.Expr:
    return pl.when(pl.col("email").str.contains(EMAIL_PATTERN)).then(pl.col("email"))


def normalized_domain() -> pl.Expr:
    return pl.when(pl.col("domain").str.len_chars() > 0).then(pl.col("domain").str.to_lowercase())


def normalized_company_name() -> pl.Expr:
    words = (
        pl.col("name")
        .str.to_lowercase()
        .str.replace_all(r"[^\p{L}\p{N}\s]", " ")
        .str.strip_chars()
        .str.replace_all(r"\s+", " ")
    )
    suffix = r"(?:\s(?:" + "|".join(LEGAL_SUFFIXES) + r"))+$"
    key = words.str.replace(suffix, "")
    return pl.when(key.str.len_chars() > 0).then(key)


CONTACT_RULES: tuple[MatchRule, ...] = (MatchRule("email", usable_email()),)
ACCOUNT_RULES: tuple[MatchRule, ...] = (
    MatchRule("domain", normalized_domain()),
    MatchRule("name", normalized_company_name()),
)


def golden_ids(frame: pl.DataFrame, rules: Sequence[MatchRule], id_column: str, prefix: str) -> pl.DataFrame:
    """``frame`` with ``id_column`` (``<prefix>_<16 hex>``) and ``match_rule`` (which rule grouped it)."""
    own = pl.concat_str(pl.lit("record:"), pl.col("source_system"), pl.lit(":"), pl.col("source_id"))
    keys = pl.coalesce([pl.concat_str(pl.lit(f"{rule.name}:"), rule.key) for rule in rules] + [own])
    matched_by = pl.coalesce(
        [pl.when(rule.key.is_not_null()).then(pl.lit(rule.name)) for rule in rules] + [pl.lit("own")]
    )
    keyed = frame.with_columns(keys.alias("__identity_key"), matched_by.alias("match_rule"))
    distinct = keyed["__identity_key"].unique()
    ids = pl.DataFrame(
        {"__identity_key": distinct, id_column: [_stable_id(prefix, key) for key in distinct.to_list()]}
    )
    return keyed.join(ids, on="__identity_key", how="left", maintain_order="left").drop("__identity_key")


def golden_contact_ids(frame: pl.DataFrame, rules: Sequence[MatchRule] = CONTACT_RULES) -> pl.DataFrame:
    """Canonical contacts with ``customer_id``: normalized-email exact match, else the record itself."""
    return golden_ids(frame, rules, "customer_id", "cus")


def golden_account_ids(frame: pl.DataFrame, rules: Sequence[MatchRule] = ACCOUNT_RULES) -> pl.DataFrame:
    """Canonical accounts with ``account_id``: domain, then normalized name, else the record itself."""
    return golden_ids(frame, rules, "account_id", "acc")


def link_golden_ids(
    child: pl.DataFrame, parent: pl.DataFrame, ref_column: str, id_column: str, alias: str | None = None
) -> pl.DataFrame:
    """Resolve a CRM-local link (``ref_column`` names a parent's source_id in the same CRM) to the golden id.

    E.g. contacts' ``account_source_id`` -> ``account_id``; interactions' ``contact_source_id`` ->
    ``customer_id``. A link to no known parent resolves to null (referential checks report it).
    """
    ids = parent.select(
        "source_system", pl.col("source_id").alias(ref_column), pl.col(id_column).alias(alias or id_column)
    ).unique(["source_system", ref_column])
    return child.join(ids, on=["source_system", ref_column], how="left", maintain_order="left")


@dataclass(frozen=True)
class DuplicateReport:
    """Duplicate groups (two or more live records under one golden id) and their counts.

    ``groups``: one row per group: the id, records, CRMs, records per CRM, and whether it is a
    duplicate inside a CRM (``within_crm``), across CRMs (``cross_crm``), or both.
    ``summary``: per scope (``within:<crm>``, ``cross:<crm>+<crm>``, ``cross:any``): groups and records.
    """

    groups: pl.DataFrame
    summary: pl.DataFrame

    def counts(self) -> dict[str, int]:
        return dict(zip(self.summary["scope"].to_list(), self.summary["groups"].to_list(), strict=True))


def duplicate_report(frame: pl.DataFrame, id_column: str = "customer_id") -> DuplicateReport:
    """The first question of an integration audit: who is in here twice, in one CRM or across CRMs?"""
    live = frame.filter(pl.col("deleted_at").is_null()) if "deleted_at" in frame.columns else frame
    per_crm = live.group_by(id_column, "source_system").len("records")
    groups = (
        per_crm.group_by(id_column)
        .agg(
            pl.col("records").sum().alias("records"),
            pl.col("source_system").sort().alias("systems"),
            pl.struct("source_system", "records").sort_by("source_system").alias("records_per_system"),
            (pl.col("records") > 1).any().alias("within_crm"),
            (pl.len() > 1).alias("cross_crm"),
        )
        .filter(pl.col("records") > 1)
        .sort("records", id_column, descending=[True, False])
    )
    within = (
        per_crm.filter(pl.col("records") > 1)
        .group_by("source_system")
        .agg(pl.len().alias("groups"), pl.col("records").sum().alias("records"))
    )
    cross = groups.filter("cross_crm")
    summary = [_scope_counts("within:" + within["source_system"], within["groups"], within["records"])]
    for (systems,), members in cross.group_by(pl.col("systems").list.join("+")):
        summary.append(_scope_counts([f"cross:{systems}"], [members.height], [members["records"].sum()]))
    summary.append(_scope_counts(["cross:any"], [cross.height], [cross["records"].sum()]))
    return DuplicateReport(groups=groups, summary=pl.concat(summary).sort("scope"))


def _scope_counts(scopes: object, groups: object, records: object) -> pl.DataFrame:
    return pl.DataFrame(
        {"scope": scopes, "groups": groups, "records": records},
        schema={"scope": pl.String, "groups": pl.UInt32, "records": pl.UInt32},
    )


def _stable_id(prefix: str, key: str) -> str:
    return f"{prefix}_{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}"
