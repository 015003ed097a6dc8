"""Vendor JSON values as canonical text: exact decimals, ISO dates, explicit UTC offsets.

JSON numbers arrive as `Decimal` (the client parses floats so) or `int`; nothing here ever
makes a binary float. Durations in seconds become hours rounded half up to the 4 decimals the
canonical `hours` column keeps (at most 0.18 s off), and are also kept whole in
`duration_seconds`, from which validation computes the amount exactly (02:14:54 at 75/h is
168.63; 2.2483 h x 75 would be 168.62). Documented in docs/sources_api.md.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sources.api.errors import ApiResponseError

_HOURS = Decimal("0.0001")
_ISO_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def text(value: Any) -> str | None:
    """Any scalar as text (None and empty stay None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):  # never expected: the client parses floats as Decimal
        raise ApiResponseError(f"binary float {value!r} reached the mapping")
    if isinstance(value, Decimal):
        return decimal_text(value)
    out = str(value).strip()
    return out or None


def decimal_text(value: Decimal | int | str | None) -> str | None:
    """An exact decimal as plain text (`1E+1` -> `10`), never in exponent form."""
    if value is None or value == "":
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return str(value)  # landing reports the type error, naming the column
    return format(d, "f")


def hours_from_seconds(seconds: Any) -> str | None:
    """Seconds (int or Decimal) as hours with 4 decimals, half up."""
    if seconds is None:
        return None
    h = (Decimal(str(seconds)) / Decimal(3600)).quantize(_HOURS, rounding=ROUND_HALF_UP)
    return format(h, "f")


def whole_seconds(seconds: Any) -> str | None:
    """Seconds as an integer text for `duration_seconds`; None when not a whole number (the
    amount then comes from the rounded hours)."""
    if seconds is None:
        return None
    d = Decimal(str(seconds))
    return str(int(d)) if d == d.to_integral_value() and d >= 0 else None


def seconds_of_iso_duration(value: str | None) -> Decimal | None:
    """`PT1H30M`, `PT45S`, `P1DT2H` as seconds (Clockify's `timeInterval.duration`)."""
    if not value:
        return None
    m = _ISO_DURATION.fullmatch(value.strip())
    if not m or not any(m.groups()):
        raise ApiResponseError(f"duration {value!r} is not an ISO 8601 duration")
    d, h, mi, s = (Decimal(g) if g else Decimal(0) for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def instant(value: str | None) -> datetime | None:
    """An ISO 8601 instant with an offset (`Z`, `+00:00`, `+0100`) as an aware datetime."""
    if not value:
        return None
    v = value.strip()
    if v.endswith(("Z", "z")):
        v = v[:-1] + "+00:00"
    v = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", v)
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise ApiResponseError(f"timestamp {value!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        raise ApiResponseError(f"timestamp {value!r} has no UTC offset")
    return dt


def instant_text(value: str | None) -> str | None:
    """An instant as canonical text, keeping its own offset (`2026-11-02T09:00:00+01:00`)."""
    dt = instant(value)
    return dt.isoformat() if dt else None


def local_date(value: str | None, zone: ZoneInfo) -> str | None:
    """The date an instant falls on in `zone` (Toggl and Clockify store UTC)."""
    dt = instant(value)
    return dt.astimezone(zone).date().isoformat() if dt else None


def utc_text(dt: datetime) -> str:
    """An instant as ISO 8601 UTC with `Z` (`2026-11-02T09:00:00Z`): no `+` to encode."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_date(value: date) -> str:
    return value.isoformat()
