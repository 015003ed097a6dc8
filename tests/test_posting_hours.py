"""Posting-hours rules: parsing, time zones, DST, windows past midnight."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from config.posting_hours import (
    PostingHoursError,
    is_allowed,
    next_opening,
    parse_posting_hours,
)


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_weekday_evenings_in_berlin_across_dst() -> None:
    rules = parse_posting_hours("mon-fri 17:00-20:00 Europe/Berlin")
    # Summer time (UTC+2) and winter time (UTC+1): the same local hours.
    assert is_allowed(rules, utc(2026, 7, 6, 15, 0))  # Mon 17:00 CEST
    assert not is_allowed(rules, utc(2026, 7, 6, 18, 0))  # Mon 20:00 CEST: end is exclusive
    assert is_allowed(rules, utc(2026, 11, 9, 16, 0))  # Mon 17:00 CET
    assert not is_allowed(rules, utc(2026, 11, 9, 15, 59))
    assert not is_allowed(rules, utc(2026, 11, 7, 16, 30))  # Saturday


def test_window_past_midnight_belongs_to_its_start_day() -> None:
    rules = parse_posting_hours("fri 22:00-02:00 UTC")
    assert is_allowed(rules, utc(2026, 11, 6, 23, 0))  # Fri 23:00
    assert is_allowed(rules, utc(2026, 11, 7, 1, 59))  # Sat 01:59, still Friday's window
    assert not is_allowed(rules, utc(2026, 11, 6, 1, 0))  # Fri 01:00 belongs to Thursday


def test_several_rules_days_lists_and_daily() -> None:
    rules = parse_posting_hours(["sat,sun 08:00-10:00 UTC", "mon,wed-thu 12:00-24:00 UTC"])
    assert is_allowed(rules, utc(2026, 11, 8, 9, 0))  # Sunday
    assert is_allowed(rules, utc(2026, 11, 12, 23, 59))  # Thursday until midnight
    assert not is_allowed(rules, utc(2026, 11, 10, 13, 0))  # Tuesday
    assert is_allowed(parse_posting_hours("daily 00:00-24:00 UTC"), utc(2026, 11, 10, 13, 0))
    assert parse_posting_hours("fri-mon 08:00-09:00 UTC")[0].days == {4, 5, 6, 0}


def test_no_rules_means_always_allowed() -> None:
    assert parse_posting_hours(None) == [] and parse_posting_hours(" ; ") == []
    assert is_allowed([], utc(2026, 11, 7, 3, 0))


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("weekdays 17:00-20:00 UTC", "unknown day"),
        ("mon-fri 17:00-25:00 UTC", "invalid time"),
        ("mon-fri 17:00-17:00 UTC", "empty"),
        ("mon-fri 17:00-20:00 Mars/Olympus", "unknown time zone"),
        ("17:00-20:00", "cannot read"),
    ],
)
def test_bad_rules_say_what_is_wrong(rule: str, message: str) -> None:
    with pytest.raises(PostingHoursError, match=message):
        parse_posting_hours(rule)


def test_next_opening() -> None:
    rules = parse_posting_hours("mon-fri 17:00-20:00 Europe/Berlin")
    assert next_opening(rules, utc(2026, 11, 7, 10, 0)) == utc(2026, 11, 9, 16, 0)
