"""Timestamp and JSON helpers shared by the dialects (each CRM prints time its own way)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson
from starlette.responses import Response

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_datetime_ms(value: str | int | float) -> int:
    """Parse the datetime spellings the three APIs accept into epoch milliseconds.

    Accepts ISO-8601 with ``Z``, ``+0000`` or ``+00:00`` offsets and optional fractions, a bare
    date, or epoch milliseconds (HubSpot filters send those). Raises ValueError otherwise.
    """
    if isinstance(value, int | float):
        return int(value)
    text = value.strip()
    if text.isdigit():
        return int(text)
    m = _ISO.match(text)
    if not m:
        raise ValueError(f"not a datetime: {value!r}")
    year, month, day, hh, mm, ss, frac, tz = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    dt = datetime(
        int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0), micro, tzinfo=UTC
    )
    ms = int(dt.timestamp() * 1000)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        ms -= sign * (int(digits[:2]) * 60 + int(digits[2:])) * 60_000
    return ms


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def salesforce_datetime(ms: int | None) -> str | None:
    """``2024-01-01T00:00:00.000+0000``, as Salesforce REST prints datetimes."""
    if ms is None:
        return None
    return _dt(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


def iso_z(ms: int | None) -> str | None:
    """``2024-01-01T00:00:00.000Z``, as HubSpot prints datetimes."""
    if ms is None:
        return None
    return _dt(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def odata_datetime(ms: int | None) -> str | None:
    """``2024-01-01T00:00:00Z``: Dataverse datetimes have whole-second precision."""
    if ms is None:
        return None
    return _dt(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, headers=headers, media_type="application/json; charset=utf-8"
    )
