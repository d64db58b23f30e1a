"""Normalizers: emails, names, domains, and phone numbers to E.164 (fast path == the library's rule)."""

from __future__ import annotations

import random

import polars as pl
import pytest

from sync_platform.canonical.mapping.normalizers import NORMALIZERS
from sync_platform.canonical.mapping.phones import normalize_phones, to_e164


def _apply(normalizer: str, values: list[str | None], region: str = "US") -> list[str | None]:
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    return frame.select(NORMALIZERS[normalizer](pl.col("v"), region)).to_series().to_list()


def test_email_is_trimmed_and_lower_cased_blank_is_null() -> None:
    assert _apply("email", ["  Ada.Lovelace@Example.COM ", "x at y", "   ", None]) == [
        "ada.lovelace@example.com",
        "x at y",
        None,
        None,
    ]


def test_name_is_trimmed_with_inner_spaces_collapsed_and_case_kept() -> None:
    names = ["  Ada ", "van   der\tBerg", "McDonald", ""]
    assert _apply("name", names) == ["Ada", "van der Berg", "McDonald", None]


def test_domain_is_the_bare_host() -> None:
    assert _apply(
        "domain",
        [
            "https://www.Acme.com/about",
            "acme.com",
            "http://shop.acme.co.uk:8080/x?y=1",
            "WWW.GLOBEX.IO.",
            "https://",
            None,
        ],
    ) == ["acme.com", "acme.com", "shop.acme.co.uk", "globex.io", None, None]


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("(415) 555-0123", "+14155550123"),  # Salesforce
        ("+1 415 555 0123", "+14155550123"),  # HubSpot
        ("415.555.0123", "+14155550123"),  # Dynamics
        ("+44 20 7946 0958", "+442079460958"),  # international, any CRM
        ("1 415 555 0123", "+14155550123"),  # national prefix: decided by the library
        ("+44 (0)20 7946 0958", "+442079460958"),  # trunk zero inside an international number
        ("415-555-0123 x42", "+14155550123"),  # extension dropped (E.164 has none)
        ("011 44 20 7946 0958", "+442079460958"),  # US international dialling prefix
        ("not a phone", None),
        ("123", None),
        ("+999 1234 5678", None),  # no such country code
        ("(055) 555-0123", None),  # no US number starts with 0
        ("", None),
        (None, None),
    ],
)
def test_phone_e164(raw: str | None, e164: str | None) -> None:
    assert _apply("phone_e164", [raw]) == [e164]
    assert to_e164(raw, "US") == e164


def test_phone_region_applies_to_numbers_without_country_code() -> None:
    phones = ["020 7946 0958", "+1 415 555 0123"]
    assert _apply("phone_e164", phones, region="GB") == ["+442079460958", "+14155550123"]


def _random_phone(r: random.Random) -> str:
    def digits(n: int) -> str:
        return "".join(str(r.randint(0, 9)) for _ in range(n))

    area, mid, end = r.randint(100, 999), r.randint(100, 999), r.randint(0, 9999)
    code = r.choice(["1", "44", "49", "33", "39", "7", "81", "353", "971", "800"])
    shapes = [
        f"({area}) {mid}-{end:04d}",
        f"+1 {area} {mid} {end:04d}",
        f"{area}.{mid}.{end:04d}",
        f"+{code} {digits(r.randint(4, 12))}",
        f"+44 (0){digits(10)}",
        f"00{r.choice(['44', '49', '1'])}{digits(9)}",
        f"1 {area} {mid} {end:04d}",
        f"0{digits(r.randint(6, 11))}",
        f"{area}-{mid}-{end:04d} x{r.randint(1, 999)}",
        digits(r.randint(1, 20)),
        "+" + digits(r.randint(1, 18)),
        f"011 44 20 {digits(8)}",
        f"{mid}-{end:04d}",
        f"{area}\t{mid}\t{end:04d}",
        r.choice(
            [
                "n/a",
                "  ",
                "call me",
                "1-800-FLOWERS",
                "+",
                "++1 415 555 0123",
                "415\u00a0555\u00a00123",
                "\uff0b1 415 555 0123",
                "\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663",
            ]
        ),
    ]
    return r.choice(shapes)


@pytest.mark.parametrize("region", ["US", "GB", "DE"])
def test_vectorized_phones_agree_with_the_library_number_for_number(region: str) -> None:
    r = random.Random(region)
    values = [_random_phone(r) for _ in range(3000)] + [None]
    expected = [to_e164(v, region) for v in values]
    assert normalize_phones(pl.Series(values, dtype=pl.String), region).to_list() == expected
    assert 0.2 < sum(e is not None for e in expected) / len(values) < 0.9  # both kinds are exercised


def test_phones_without_a_clear_shape_reach_the_library_once_per_distinct_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sync_platform.canonical.mapping.phones as phones

    calls: list[str] = []

    def counting(raw: str | None, region: str) -> str | None:
        calls.append(raw or "")
        return to_e164(raw, region)

    monkeypatch.setattr(phones, "to_e164", counting)
    values = ["(415) 555-0123", "+1 415 555 0124", "1 415 555 0125", "1 415 555 0125", "oops"] * 1000
    result = phones.normalize_phones(pl.Series(values), "US").to_list()
    assert result[:5] == ["+14155550123", "+14155550124", "+14155550125", "+14155550125", None]
    assert sorted(calls) == ["1 415 555 0125", "oops"]
