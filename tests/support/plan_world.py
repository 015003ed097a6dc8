"""A small resource-planning world with known numbers: plans, approved time, capacity.

Weeks compared: 2026-W45 (Mon 2 Nov) to 2026-W47 (Mon 16 Nov). Employees E1 (US01, the
default capacity 40 h) and E2 (DE01, 32 h a week from its own column). Plans:

- A1: E1 on P1, week of 2 Nov, 20 h at 200.00 (planned amount 4,000.00)
- A2: E1 on P1, week of 9 Nov, 10 h (no rate)
- A3: E2 on P5, Wed 4 Nov to Tue 17 Nov, 25 h at 100.00: 10 working days, 3/5/2 a week,
  so 7.5 / 12.5 / 5 h (750.00 / 1,250.00 / 500.00)
- A4: E1 on P1, Thu 12 Nov to Mon 16 Nov, 10 h: 3 working days, 2 in W46 and 1 in W47,
  so 6.6667 and 3.3333 h (rounded on the running total: they add up to 10)
- A5: quarantined (week not a Monday): plans nothing.

Approved time (valid): E1 on P1 8 h on 2, 3, 4 Nov at 150.00 (billable), 4 h on 10 Nov on
the non-billable task T9; E1 on P3 (internal, unplanned) 2 h on 17 Nov; E2 on P5 6 h on 5 Nov,
12.5 h on 11 Nov and 10 h on 17 Nov at 100.00. A submitted entry (E1, 5 Nov) counts nothing.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from staging_models.db import StagingDB
from staging_models.resource_plans import Weeks
from tests.support.staging_helpers import EMPLOYEES, World, entry

WEEKS = Weeks(date(2026, 11, 2), date(2026, 11, 16))
CAPACITY = Decimal("40")
D = Decimal


def assignment(**kw: str) -> dict[str, str]:
    base = dict(
        assignment_id="A1",
        employee_id="E1",
        project_code="P1",
        task_code="T1",
        role="senior",
        week_start="2026-11-02",
        start_date="",
        end_date="",
        planned_hours="20",
        bill_rate="200.00",
        updated_at="2026-10-20T10:00:00Z",
        deleted="false",
    )
    return {**base, **kw}


ASSIGNMENTS = [
    assignment(),
    assignment(assignment_id="A2", week_start="2026-11-09", planned_hours="10", bill_rate=""),
    assignment(
        assignment_id="A3",
        employee_id="E2",
        project_code="P5",
        role="consultant",
        week_start="",
        start_date="2026-11-04",
        end_date="2026-11-17",
        planned_hours="25",
        bill_rate="100.00",
    ),
    assignment(
        assignment_id="A4",
        task_code="",
        week_start="",
        start_date="2026-11-12",
        end_date="2026-11-16",
        planned_hours="10",
        bill_rate="",
    ),
    assignment(assignment_id="A5", week_start="2026-11-03", planned_hours="30"),
]

_APPROVED = "2026-11-19T09:00:00Z"
ENTRIES = [
    entry(entry_id="T1", work_date="2026-11-02", hours="8", approved_at=_APPROVED),
    entry(entry_id="T2", work_date="2026-11-03", hours="8", approved_at=_APPROVED),
    entry(entry_id="T3", work_date="2026-11-04", hours="8", approved_at=_APPROVED),
    entry(
        entry_id="T4",
        work_date="2026-11-10",
        hours="4",
        task_code="T9",
        billable="false",
        approved_at=_APPROVED,
    ),
    entry(
        entry_id="T5",
        work_date="2026-11-17",
        hours="2",
        project_code="P3",
        billable="false",
        bill_rate="",
        approved_at=_APPROVED,
    ),
    *(
        entry(
            entry_id=f"T{n}",
            employee_id="E2",
            employee_name="Jörg Müller",
            project_code="P5",
            work_date=day,
            hours=hours,
            bill_rate="100.00",
            currency="EUR",
            approved_at=_APPROVED,
        )
        for n, day, hours in [
            (6, "2026-11-05", "6"),
            (7, "2026-11-11", "12.5"),
            (8, "2026-11-17", "10"),
        ]
    ),
    entry(
        entry_id="T9",
        work_date="2026-11-05",
        hours="5",
        approval_status="submitted",
        approved_at="",
    ),
]

#: plan_actuals as it must be: (employee, project, week) -> planned, actual, billable,
#: variance, planned amount, actual amount.
EXPECTED = {
    ("E1", "P1", date(2026, 11, 2)): (
        D("20"),
        D("24"),
        D("24"),
        D("4"),
        D("4000.00"),
        D("3600.00"),
    ),
    ("E1", "P1", date(2026, 11, 9)): (
        D("16.6667"),
        D("4"),
        D("0"),
        D("-12.6667"),
        None,
        D("0.00"),
    ),
    ("E1", "P1", date(2026, 11, 16)): (D("3.3333"), D("0"), D("0"), D("-3.3333"), None, D("0.00")),
    ("E1", "P3", date(2026, 11, 16)): (D("0"), D("2"), D("0"), D("2"), None, D("0.00")),
    ("E2", "P5", date(2026, 11, 2)): (
        D("7.5"),
        D("6"),
        D("6"),
        D("-1.5"),
        D("750.00"),
        D("600.00"),
    ),
    ("E2", "P5", date(2026, 11, 9)): (
        D("12.5"),
        D("12.5"),
        D("12.5"),
        D("0"),
        D("1250.00"),
        D("1250.00"),
    ),
    ("E2", "P5", date(2026, 11, 16)): (D("5"), D("10"), D("10"), D("5"), D("500.00"), D("1000.00")),
}


def build(db: StagingDB, folder: Path) -> World:
    """Master data (E2 with 32 h a week), plans and approved time, landed and validated."""
    world = World(db, folder).master()
    world.land(
        "employees",
        [EMPLOYEES[0], {**EMPLOYEES[1], "weekly_capacity_hours": "32"}],
    )
    world.land("assignments", ASSIGNMENTS)
    world.land("time_entries", ENTRIES)
    world.validate()
    return world
