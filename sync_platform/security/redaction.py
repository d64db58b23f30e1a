"""Masking of personal data in values that leave the warehouse's protected columns.

Quarantine rows, check metadata and logs show *that* a value was wrong without showing the
value itself: emails keep their first character and domain suffix, phones their last two digits.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime

import phonenumbers

PII_COLUMNS = frozenset({"email", "phone", "first_name", "last_name", "name", "full_name"})
HASH_PREFIX = "blake2b:"
HASH_PATTERN = re.compile(rf"^{HASH_PREFIX}[0-9a-f]{{16}}$")
_EMAIL = re.compile(r"([^@\s])[^@\s]*@([^@\s])[^@\s]*?(\.[A-Za-z]{2,})?(?=\s|$)")


def mask_value(column: str | None, value: object) -> str | None:
    """The value as it may be shown: masked when the column holds PII or the text looks like it."""
    if value is None:
        return None
    text = str(value)
    if column in PII_COLUMNS:
        if "@" in text:
            return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}***{m.group(3) or ''}", text)
        digits = re.sub(r"\D", "", text)
        if len(digits) >= 6:
            return f"***{digits[-2:]}"
        return f"{text[:1]}***" if text else text
    return redact_text(text)


def redact_text(text: str, region: str = "US") -> str:
    """Mask every email address and phone number in free text.

    Phone numbers are found by ``phonenumbers``' matcher (valid numbers only), not a digit regex
    that would also eat run ids, dates and counts; a cheap digit count skips most lines.
    """
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}***{m.group(3) or ''}", text)
    if sum(ch.isdigit() for ch in text) < 7:
        return text
    for match in reversed(list(phonenumbers.PhoneNumberMatcher(text, region))):
        digits = re.sub(r"\D", "", match.raw_string)
        text = text[: match.start] + "***" + digits[-2:] + text[match.end :]
    return text


def pii_hash(value: object) -> str | None:
    """A short, stable digest of a value (``blake2b:<16 hex>``): comparable, not readable."""
    if value is None:
        return None
    text = value.isoformat() if isinstance(value, datetime | date) else str(value)
    return HASH_PREFIX + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
