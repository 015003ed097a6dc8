"""Owners and due dates from the routing rules: first match by rule, dataset, legal entity,
default; due dates in business days per rule class, the shortest of a row's rules."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from staging_models.contracts import RULES
from staging_models.desk_routing import due_dates, owners, rule_class


def _frame() -> pd.DataFrame:
    friday = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    return pd.DataFrame(
        {
            "dataset": ["time_entries", "invoices", "time_entries", "employees"],
            "rule_codes": [
                "TE_HOURS_OVER_24,TE_UNKNOWN_EMPLOYEE",
                "INV_AMOUNT_MISMATCH",
                "TE_WORK_DATE_FORMAT",
                "EMP_LEGAL_ENTITY_MISSING",
            ],
            "legal_entity": ["US01", "DE01", "DE01", None],
            "first_seen": [friday] * 4,
        }
    )


def test_owner_is_the_first_match() -> None:
    rules = {
        "rules": {"TE_UNKNOWN_EMPLOYEE": "hr-data"},
        "datasets": {"invoices": "billing"},
        "entities": {"DE01": "finance-de"},
        "default": "finance-ops",
    }
    assert owners(_frame(), rules).tolist() == ["hr-data", "billing", "finance-de", "finance-ops"]
    assert owners(_frame(), {}).tolist() == ["finance-ops"] * 4


def test_due_date_in_business_days_shortest_rule_wins() -> None:
    days = {"format": 1, "master_data": 2, "data": 5}
    got = due_dates(_frame(), days).tolist()
    # Friday 2026-11-20: master data (2 days, beats the range rule's 5) -> Tuesday; data 5 ->
    # the next Friday; format 1 -> Monday.
    assert got == [date(2026, 11, 24), date(2026, 11, 27), date(2026, 11, 23), date(2026, 11, 23)]


@pytest.mark.parametrize(
    "code, cls",
    [
        ("TE_PROJECT_CLOSED", "master_data"),
        ("TE_RATE_MISSING", "master_data"),
        ("RC_OVERLAP", "master_data"),
        ("TE_PROJECT_CODE_MISSING", "format"),
        ("INV_STATUS_UNKNOWN", "format"),
        ("TE_CURRENCY_INVALID", "format"),
        ("TE_HOURS_OVER_24", "data"),
        ("INV_DUPLICATE_CONFLICT", "data"),
    ],
)
def test_rule_classes(code: str, cls: str) -> None:
    assert rule_class(code) == cls


def test_every_rule_has_a_class() -> None:
    codes = [r.code for rules in RULES.values() for r in rules]
    assert {rule_class(c) for c in codes} == {"format", "master_data", "data"}
