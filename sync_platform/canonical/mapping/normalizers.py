"""Normalizers a mapping can name: each turns a string column into its canonical spelling.

All are polars expressions over the whole column; ``phone_e164`` reaches the ``phonenumbers``
library only for the values its vectorized path cannot decide (see :mod:`.phones`). A blank
result is null: an empty string is not a value.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from sync_platform.canonical.mapping.phones import normalize_phones

Normalizer = Callable[[pl.Expr, str], pl.Expr]  # (string column, phone region) -> expression


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return expr.replace("", None)  # unlike when/then, evaluates ``expr`` once


def trim(expr: pl.Expr, _region: str = "US") -> pl.Expr:
    return _blank_to_null(expr.str.strip_chars())


def lower(expr: pl.Expr, _region: str = "US") -> pl.Expr:
    return _blank_to_null(expr.str.strip_chars().str.to_lowercase())


def upper(expr: pl.Expr, _region: str = "US") -> pl.Expr:
    return _blank_to_null(expr.str.strip_chars().str.to_uppercase())


def email(expr: pl.Expr, _region: str = "US") -> pl.Expr:
    """Trim and lower-case; the format itself is a quality rule, not a normalization."""
    return lower(expr)


def name(expr: pl.Expr, _region: str = "US") -> pl.Expr:
    """Trim and collapse inner whitespace; case is kept (McDonald, van der Berg)."""
    trimmed = expr.str.strip_chars()
    needs_collapse = trimmed.str.contains(r"\s\s|[^\S ]")  # cheaper than rewriting every name
    collapsed = pl.when(needs_collapse).then(trimmed.str.replace_all(r"\s+", " ")).otherwise(trimmed)
    return _blank_to_null(collapsed)


def domain(expr: pl.Expr, _region: str = "US") -> pl.Expr:
    """A website or domain to its bare host: ``https://www.Acme.com/about`` -> ``acme.com``."""
    host = (
        expr.str.strip_chars()
        .str.to_lowercase()
        .str.replace(r"^[a-z][a-z0-9+.\-]*://", "")
        .str.replace(r"[/?#:].*$", "")
        .str.replace(r"^www\.", "")
        .str.strip_chars_end(".")
    )
    return _blank_to_null(host)


def phone_e164(expr: pl.Expr, region: str = "US") -> pl.Expr:
    """E.164, or null when the value is not a phone number (the engine flags those rows)."""
    return expr.map_batches(
        lambda values: normalize_phones(values, region), return_dtype=pl.String, is_elementwise=True
    )


BLANK_NULLING = frozenset({"trim", "lower", "upper", "email", "name"})
"""Normalizers whose result is null exactly when the input is null or blank: they cannot fail."""

NORMALIZERS: dict[str, Normalizer] = {
    "trim": trim,
    "lower": lower,
    "upper": upper,
    "email": email,
    "name": name,
    "domain": domain,
    "phone_e164": phone_e164,
}
