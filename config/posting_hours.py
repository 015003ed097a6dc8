"""When posting is allowed: finance's posting hours, e.g. `mon-fri 17:00-20:00 Europe/Berlin`.

Posting while accountants close a period or run reports makes numbers move under
them, so windows run in agreed hours. Outside them a window refuses to post
unless someone gives a reason, which the window records.

Grammar, one rule per string (or several separated by `;`):
`<days> <HH:MM>-<HH:MM> <IANA time zone>`, days as `mon-fri`, `sat,sun`,
`mon,wed-fri`, `daily`. An end before the start runs past midnight into the next
day (`mon-fri 22:00-02:00 UTC` includes Saturday 01:00); `24:00` ends at midnight.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RULE = re.compile(
    r"^\s*(?P<days>[a-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s+(?P<tz>\S+)\s*$"
)


class PostingHoursError(ValueError):
    """A posting-hours rule that cannot be parsed."""


@dataclass(frozen=True)
class PostingHours:
    """One rule: on these weekdays, from start to end, in this time zone."""

    text: str
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1..1440; <= start means it ends the next day
    tz: ZoneInfo

    def contains(self, moment: datetime) -> bool:
        """Is this aware moment inside the rule (in the rule's own time zone)?"""
        local = moment.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        today = local.weekday()
        if self.start < self.end:
            return today in self.days and self.start <= minute < self.end
        # Runs past midnight: the evening part today, the morning part from yesterday's rule.
        yesterday = (today - 1) % 7
        return (today in self.days and minute >= self.start) or (
            yesterday in self.days and minute < self.end
        )


def _minutes(hhmm: str, rule: str) -> int:
    h, m = (int(x) for x in hhmm.split(":"))
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise PostingHoursError(f"invalid time {hhmm!r} in posting hours {rule!r}")
    return h * 60 + m


def _days(spec: str, rule: str) -> frozenset[int]:
    if spec in ("daily", "*", "all"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        try:
            i, j = DAYS.index(a[:3]), DAYS.index((b or a)[:3])
        except ValueError:
            raise PostingHoursError(
                f"unknown day in {spec!r} of posting hours {rule!r}: use mon..sun or daily"
            ) from None
        out.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
    return frozenset(out)


def parse_posting_hours(rules: str | Iterable[str] | None) -> list[PostingHours]:
    """Parse rules; empty or None means no restriction (an empty list)."""
    if rules is None:
        return []
    items = rules.split(";") if isinstance(rules, str) else list(rules)
    out = []
    for text in (r.strip() for r in items):
        if not text:
            continue
        m = _RULE.match(text.lower())
        if not m:
            raise PostingHoursError(
                f"cannot read posting hours {text!r}: expected e.g. 'mon-fri 17:00-20:00 Europe/Berlin'"
            )
        tz_name = text.split()[-1]  # keep the zone's own spelling
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise PostingHoursError(
                f"unknown time zone {tz_name!r} in posting hours {text!r}"
            ) from None
        start, end = _minutes(m["start"], text), _minutes(m["end"], text)
        if start == end:
            raise PostingHoursError(f"posting hours {text!r} are empty (start equals end)")
        out.append(PostingHours(text, _days(m["days"], text), start, end % 1440 or 1440, tz))
    return out


def is_allowed(rules: list[PostingHours], moment: datetime) -> bool:
    """No rules: always allowed. Otherwise inside at least one rule."""
    return not rules or any(r.contains(moment) for r in rules)


def describe_refusal(rules: list[PostingHours], moment: datetime) -> str:
    """The message a refused window shows: the allowed hours and the time it is there."""
    tz = rules[0].tz
    local = moment.astimezone(tz)
    allowed = "; ".join(r.text for r in rules)
    nxt = next_opening(rules, moment)
    when = f" The next window opens {nxt.astimezone(tz):%a %Y-%m-%d %H:%M}." if nxt else ""
    return (
        f"Posting is allowed only {allowed}; it is now {local:%a %Y-%m-%d %H:%M} {tz.key}.{when} "
        "Run a dry run, wait for the window, or give an override reason to post now "
        "(the reason is recorded)."
    )


def next_opening(rules: list[PostingHours], moment: datetime) -> datetime | None:
    """The next minute at which posting is allowed (for messages and schedules), within 8 days."""
    if not rules:
        return moment
    probe = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(8 * 24 * 4):  # 15-minute steps, then refine
        if is_allowed(rules, probe):
            back = probe - timedelta(minutes=15)
            while back < probe and not is_allowed(rules, back):
                back += timedelta(minutes=1)
            return back if back > moment else probe
        probe += timedelta(minutes=15)
    return None


__all__ = [
    "PostingHours",
    "PostingHoursError",
    "describe_refusal",
    "is_allowed",
    "next_opening",
    "parse_posting_hours",
]
