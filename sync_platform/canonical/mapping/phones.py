"""Phone numbers to E.164, decided by the ``phonenumbers`` library and its metadata, at column speed.

The rule (:func:`to_e164`): ``phonenumbers.parse`` with the CRM's default region; the number is
kept when its national significant number fully matches its country's general number pattern
(the union of every number type the library knows for that country code), and written as E.164.
This is stricter than "possible length" (no ``+1 055 ...``), looser than ``is_valid_number``
(which also requires the area code to be allocated today: that list changes with every library
release, and a canonical value must not flip when a dependency is upgraded).

Parsing costs ~60 µs a number in pure Python, a minute per million contacts, so
:func:`normalize_phones` resolves the shapes that need no judgement as polars expressions, with the
library's own metadata (country codes, general patterns, national and international prefixes):
``+<country code><national number>`` and, for the default region, a bare national number. A shape
that could involve a national prefix, an international dialling prefix, a leading zero, letters or
an extension goes to the library itself, once per distinct value. ``sync_platform_tests`` checks
that both paths agree number for number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import phonenumbers
import polars as pl
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, NumberParseException, PhoneMetadata, PhoneNumberFormat

FORMATTING = [" ", "(", ")", ".", "-", "/"]  # what CRMs put between digits; anything else: the library
_MIN_NSN, _MAX_NSN = 2, 17  # the library's bounds on a national significant number
_CODES_PER_REGEX = 20  # all ~215 countries in one regex exceed the regex engine's size limit


@dataclass(frozen=True)
class CountryRules:
    """What decides a number of one country calling code, from the library's metadata."""

    country_code: str
    general_pattern: str  # full-match regex of every valid national number
    national_prefix: str | None  # regex of a trunk prefix the library may strip (national_prefix_for_parsing)
    international_prefix: str | None  # regex of the dialling prefix that turns a bare number international


@cache
def country_rules(country_code: int) -> CountryRules | None:
    """The library's metadata for a calling code (None for a code it does not know)."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not regions:
        return None
    metadata = [
        PhoneMetadata.metadata_for_nongeo_region(country_code)
        if region == "001"
        else PhoneMetadata.metadata_for_region(region)
        for region in regions
    ]
    patterns = [
        m.general_desc.national_number_pattern
        for m in metadata
        if m is not None and m.general_desc is not None and m.general_desc.national_number_pattern
    ]
    if not patterns:
        return None
    main = metadata[0]  # the library parses with the main region's prefixes
    return CountryRules(
        country_code=str(country_code),
        general_pattern="|".join(f"(?:{p})" for p in patterns),
        national_prefix=main.national_prefix_for_parsing if main is not None else None,
        international_prefix=main.international_prefix if main is not None else None,
    )


@cache
def region_country_code(region: str) -> int:
    """The calling code of a region: the country code of numbers written without one."""
    metadata = PhoneMetadata.metadata_for_region(region.upper())
    if metadata is None:
        raise ValueError(f"unknown phone region {region!r}")
    return metadata.country_code


@cache
def _general_regex(country_code: int) -> re.Pattern[str] | None:
    rules = country_rules(country_code)
    return re.compile(rules.general_pattern) if rules else None


def to_e164(raw: str | None, region: str) -> str | None:
    """The rule itself, one number at a time: E.164, or None when the value is not a phone number."""
    if raw is None:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException:
        return None
    pattern = _general_regex(number.country_code)
    if pattern is None or not pattern.fullmatch(phonenumbers.national_significant_number(number)):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


COUNTRY_CODES_BY_LENGTH = {  # every calling code the library knows, by number of digits
    n: sorted(str(cc) for cc in COUNTRY_CODE_TO_REGION_CODE if len(str(cc)) == n) for n in (1, 2, 3)
}


@cache
def _country_code_by_prefix() -> dict[str, str]:
    """Every 1-3 digit prefix -> the calling code it starts with (codes are prefix-free: at most one)."""
    codes = {code for by_length in COUNTRY_CODES_BY_LENGTH.values() for code in by_length}
    prefixes = [f"{n:0{width}d}" for width in (1, 2, 3) for n in range(10**width)]
    return {
        p: next(p[:n] for n in (1, 2, 3) if p[:n] in codes)
        for p in prefixes
        if any(p[:n] in codes for n in (1, 2, 3))
    }


def _country_code_of(digits: pl.Expr) -> pl.Expr:
    """The calling code that starts ``digits``: a hash lookup of the first three digits."""
    return digits.str.slice(0, 3).replace_strict(
        _country_code_by_prefix(), default=None, return_dtype=pl.String
    )


def _starts_with(expr: pl.Expr, pattern: str | None) -> pl.Expr:
    return expr.str.contains(f"^(?:{pattern})") if pattern else pl.lit(False)


def _fast_e164(raw: pl.Series, region: str) -> pl.DataFrame:
    """``e164`` for the unambiguous shapes, and ``fallback``: the rows the library must decide."""
    home = country_rules(region_country_code(region))
    assert home is not None
    cleaned = pl.col("raw").str.strip_chars().str.replace_many(FORMATTING, [""] * len(FORMATTING))
    shaped = (
        pl.DataFrame({"raw": raw})
        .lazy()
        .with_columns(cleaned.alias("cleaned"))
        .with_columns(
            international=pl.col("cleaned").str.contains(r"^\+[0-9]+$"),
            national=pl.col("cleaned").str.contains(r"^[0-9]+$"),
        )
        .with_columns(
            country_code=pl.when(pl.col("international"))
            .then(_country_code_of(pl.col("cleaned").str.slice(1)))
            .when(pl.col("national"))
            .then(pl.lit(home.country_code)),
        )
        .with_columns(
            nsn=pl.when(pl.col("international"))
            .then(pl.col("cleaned").str.slice(pl.col("country_code").str.len_chars() + 1))
            .when(pl.col("national"))
            .then(pl.col("cleaned")),
        )
        .with_columns(digits=pl.col("country_code") + pl.col("nsn"))
        .collect()
    )
    present_codes = shaped["country_code"].drop_nulls().unique().sort().to_list()
    codes = [code for code in present_codes if country_rules(int(code))]
    nsn, digits = pl.col("nsn"), pl.col("digits")
    bare = (
        pl.col("national")
        & ~nsn.str.starts_with("0")
        & ~nsn.str.starts_with(home.country_code)
        & ~_starts_with(nsn, home.national_prefix)
        & ~_starts_with(nsn, home.international_prefix)
    )
    # one regex per batch of calling codes: "<code><pattern>" alternatives (codes are prefix-free)
    prefixed = pl.lit(False)
    valid = pl.lit(False)
    for batch in (codes[i : i + _CODES_PER_REGEX] for i in range(0, len(codes), _CODES_PER_REGEX)):
        rules = [country_rules(int(code)) for code in batch]
        trunk = "|".join(f"{r.country_code}(?:{r.national_prefix})" for r in rules if r and r.national_prefix)
        if trunk:
            prefixed = prefixed | digits.str.contains(f"^(?:{trunk})")
        valid = valid | digits.str.contains(
            "^(?:" + "|".join(f"{r.country_code}(?:{r.general_pattern})" for r in rules if r) + ")$"
        )
    international = (
        pl.col("international") & pl.col("country_code").is_in(codes) & ~nsn.str.starts_with("0") & ~prefixed
    )
    decided = (bare | international).fill_null(False)
    valid = valid & nsn.str.len_chars().is_between(_MIN_NSN, _MAX_NSN)
    return (
        shaped.lazy()
        .select(
            pl.when(decided & valid).then(pl.lit("+") + digits).alias("e164"),
            (pl.col("raw").is_not_null() & ~decided).alias("fallback"),
        )
        .collect()
    )


def normalize_phones(values: pl.Series, region: str = "US") -> pl.Series:
    """E.164 strings for a column of CRM phone values (null where a value is not a phone number)."""
    if values.dtype != pl.String:
        values = values.cast(pl.String)
    fast = _fast_e164(values, region)
    needs_library = values.filter(fast["fallback"]).unique().drop_nulls()
    if needs_library.is_empty():
        return fast["e164"].alias(values.name)
    decided = {raw: to_e164(raw, region) for raw in needs_library.to_list()}
    by_library = values.replace_strict(decided, default=None, return_dtype=pl.String)
    return fast.select(pl.when("fallback").then(by_library).otherwise("e164")).to_series().alias(values.name)
