"""Plan vs actual with known numbers, on DuckDB and PostgreSQL (see tests/support/plan_world.py).

The comparison (`staging_models.resource_plans.compare_plans`) is checked row by row and
figure by figure: planned hours of weeks and date ranges (spread over working days, adding
up exactly), approved actual and billable hours, amounts, capacity from the employee or the
default, utilization, over and under plan; and the outbound actuals file's rows.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.outbound.folders import LocalFolder
from staging_models.db import StagingDB
from staging_models.outbound import Targets, deliver
from staging_models.resource_plans import (
    OUTBOUND_COLUMNS,
    Weeks,
    actuals_feed,
    by_employee,
    by_project,
    by_week,
    compare_plans,
    plan_summary,
)
from tests.support.plan_world import CAPACITY, EXPECTED, WEEKS, assignment, build
from tests.support.staging_helpers import World

D = Decimal


def _table(db: StagingDB) -> dict:
    df = db.query_df(
        """SELECT employee_id, project_code, week_start, planned_hours, actual_hours,
                  billable_hours, variance_hours, planned_amount, actual_amount
           FROM plan_actuals"""
    )
    out = {}
    for r in df.itertuples(index=False):
        week = r.week_start if isinstance(r.week_start, date) else r.week_start.date()
        out[(r.employee_id, r.project_code, week)] = tuple(
            None if v is None else D(v)
            for v in (
                r.planned_hours,
                r.actual_hours,
                r.billable_hours,
                r.variance_hours,
                r.planned_amount,
                r.actual_amount,
            )
        )
    return out


def test_known_numbers(any_db: StagingDB, tmp_path: Path) -> None:
    build(any_db, tmp_path)
    assert compare_plans(any_db, WEEKS, default_capacity=CAPACITY, run_id="r1") == 7
    assert _table(any_db) == EXPECTED
    # Every value is an exact decimal of the column's scale, never a float.
    raw = any_db.query_df("SELECT planned_hours, planned_amount FROM plan_actuals")
    assert all(isinstance(v, Decimal) for v in raw["planned_hours"])
    capacity = any_db.query_df(
        "SELECT employee_id, week_start, capacity_hours, capacity_source FROM plan_capacity"
    )
    assert sorted((e, D(c), s) for e, _, c, s in capacity.itertuples(index=False)) == sorted(
        [("E1", D(40), "default")] * 3 + [("E2", D(32), "employee")] * 3
    )
    s = plan_summary(any_db)
    assert (s.planned_hours, s.actual_hours, s.billable_hours, s.capacity_hours) == (
        D("65.0000"),
        D("58.5000"),  # 28 + 2 + 28.5
        D("52.5000"),
        D("216.0000"),
    )
    assert s.utilization == "24.31%"  # 52.5 / 216
    assert s.burn == "86.92%"  # (28 + 28.5) / (40 + 25); P3 has no plan
    assert s.projects_over_plan == ["P5"]
    assert s.projects_unplanned == ["P3"]
    assert s.people_over_plan == ["E2"]
    assert s.people_under_plan == ["E1"]


def test_summaries_by_week_project_and_employee(any_db: StagingDB, tmp_path: Path) -> None:
    build(any_db, tmp_path)
    compare_plans(any_db, WEEKS, default_capacity=CAPACITY, run_id="r1")
    w = by_week(any_db)
    assert [
        (
            r.week_start,
            r.planned_hours,
            r.actual_hours,
            r.billable_hours,
            r.capacity_hours,
            r.utilization,
        )
        for r in w.itertuples(index=False)
    ] == [
        (date(2026, 11, 2), D("27.5000"), D("30.0000"), D("30.0000"), D("72.0000"), "41.67%"),
        (date(2026, 11, 9), D("29.1667"), D("16.5000"), D("12.5000"), D("72.0000"), "17.36%"),
        (date(2026, 11, 16), D("8.3333"), D("12.0000"), D("10.0000"), D("72.0000"), "13.89%"),
    ]
    p = by_project(any_db).set_index("project_code")
    assert p.loc["P1", ["planned_hours", "actual_hours", "burn", "plan_status"]].tolist() == [
        D("40.0000"),
        D("28.0000"),
        "70.00%",
        "under_plan",
    ]
    assert p.loc["P5", "burn"] == "114.00%" and p.loc["P5", "plan_status"] == "over_plan"
    assert p.loc["P3", "burn"] is None and p.loc["P3", "plan_status"] == "unplanned"
    e = by_employee(any_db).set_index("employee_id")
    assert e.loc["E2", ["capacity_hours", "billable_hours", "utilization"]].tolist() == [
        D("96.0000"),
        D("28.5000"),
        "29.69%",
    ]
    # One legal entity: its projects' hours, its employees' capacity.
    de = plan_summary(any_db, "DE01")
    assert (de.planned_hours, de.actual_hours, de.capacity_hours) == (
        D("25.0000"),
        D("28.5000"),
        D("96.0000"),
    )
    assert de.people_over_plan == ["E2"] and de.people_under_plan == []


def test_a_range_adds_up_to_its_hours(any_db: StagingDB, tmp_path: Path) -> None:
    """Ranges whose hours do not divide by their working days: the weeks still add up to the
    planned hours exactly (the rounding lands on the running total)."""
    world = World(any_db, tmp_path).master()
    ranges = {
        "R1": ("2026-11-04", "2026-11-24", "7"),  # 15 working days
        "R2": ("2026-11-06", "2026-11-09", "0.0001"),  # Fri + Mon
        "R3": ("2026-11-02", "2026-11-29", "79.9999"),  # 20 working days, weekend at the end
        "R4": ("2026-11-05", "2026-11-19", "33.3333"),
    }
    world.land(
        "assignments",
        [
            assignment(
                assignment_id=k,
                employee_id="E1" if k in ("R1", "R3") else "E2",
                project_code="P1" if k in ("R1", "R3") else "P5",
                task_code="",
                week_start="",
                start_date=a,
                end_date=b,
                planned_hours=h,
            )
            for k, (a, b, h) in ranges.items()
        ],
    )
    world.validate()
    compare_plans(
        any_db,
        Weeks.covering(date(2026, 11, 1), date(2026, 11, 30)),
        default_capacity=D(40),
        run_id="r",
    )
    got = any_db.query_df(
        "SELECT employee_id, SUM(planned_hours) AS h FROM plan_actuals GROUP BY employee_id"
    )
    sums = {e: D(h) for e, h in got.itertuples(index=False)}
    assert sums == {"E1": D("86.9999"), "E2": D("33.3334")}
    weeks = any_db.query_df(
        "SELECT week_start, planned_hours FROM plan_actuals WHERE employee_id = 'E2' ORDER BY 1"
    )
    # R2: Fri 6 Nov (W45) and Mon 9 Nov (W46): half of 0.0001 h rounds up onto the first.
    # R4: Thu 5 to Thu 19 Nov: 11 working days, 2 / 5 / 4.
    assert [D(h) for h in weeks["planned_hours"]] == [
        D("6.0607"),  # R4 round(33.3333 x 2/11) = 6.0606, + R2 round(0.0001 x 1/2) = 0.0001
        D("15.1515"),  # R4 round(33.3333 x 7/11) - 6.0606 = 21.2121 - 6.0606; R2 0
        D("12.1212"),  # R4 33.3333 - 21.2121
    ]


def test_only_the_period_and_only_valid_plans(any_db: StagingDB, tmp_path: Path) -> None:
    """Weeks outside the period are left out (a range reaching in counts its weeks inside);
    a quarantined or deleted assignment plans nothing; comparing again replaces the rows."""
    build(any_db, tmp_path)
    one_week = Weeks.covering(date(2026, 11, 11), date(2026, 11, 13))
    assert one_week == Weeks(date(2026, 11, 9), date(2026, 11, 9))
    compare_plans(any_db, one_week, default_capacity=CAPACITY, run_id="r2")
    rows = _table(any_db)
    assert set(rows) == {("E1", "P1", date(2026, 11, 9)), ("E2", "P5", date(2026, 11, 9))}
    assert rows[("E2", "P5", date(2026, 11, 9))][0] == D("12.5")
    # A3 deleted in the PSA: E2 keeps the actuals, loses the plan.
    world = World(any_db, tmp_path / "more")
    world.land(
        "assignments",
        [
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
                deleted="true",
            )
        ],
    )
    world.validate()
    compare_plans(any_db, one_week, default_capacity=CAPACITY, run_id="r3")
    assert _table(any_db)[("E2", "P5", date(2026, 11, 9))][:3] == (D(0), D("12.5"), D("12.5"))
    assert set(any_db.query_df("SELECT DISTINCT run_id FROM plan_actuals")["run_id"]) == {"r3"}


def test_capacity_default_must_be_a_positive_decimal(duck_db: StagingDB) -> None:
    with pytest.raises(ValueError, match="Decimal"):
        compare_plans(duck_db, WEEKS, default_capacity=40.0, run_id="r")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="before it starts"):
        Weeks.covering(date(2026, 11, 9), date(2026, 11, 2))


def test_actuals_feed_delivered(any_db: StagingDB, tmp_path: Path) -> None:
    """The actuals for the scheduling tool go out through the status feedback's delivery: one
    row per employee, project and week, text only, exact hours with 4 decimals, in key order;
    a second comparison with nothing changed sends nothing, a changed week sends that row."""
    build(any_db, tmp_path)
    compare_plans(any_db, WEEKS, default_capacity=CAPACITY, run_id="r1")
    out = tmp_path / "out"
    targets = Targets(folder=LocalFolder(out))
    first = deliver(any_db, actuals_feed(any_db), targets)
    assert first.sequence == 1 and first.records == 7
    text = (out / "plan_actuals_00000001.csv").read_text(encoding="utf-8")
    lines = [",".join(r) for r in csv.reader(io.StringIO(text))]
    assert lines[0] == ",".join(OUTBOUND_COLUMNS)
    assert lines[1:] == [
        "E1,P1,2026-11-02,2026-W45,20.0000,24.0000,24.0000,4.0000",
        "E1,P1,2026-11-09,2026-W46,16.6667,4.0000,0.0000,-12.6667",
        "E1,P1,2026-11-16,2026-W47,3.3333,0.0000,0.0000,-3.3333",
        "E1,P3,2026-11-16,2026-W47,0.0000,2.0000,0.0000,2.0000",
        "E2,P5,2026-11-02,2026-W45,7.5000,6.0000,6.0000,-1.5000",
        "E2,P5,2026-11-09,2026-W46,12.5000,12.5000,12.5000,0.0000",
        "E2,P5,2026-11-16,2026-W47,5.0000,10.0000,10.0000,5.0000",
    ]
    assert "\r" not in text and (out / "plan_actuals_00000001.manifest.json").exists()

    compare_plans(any_db, WEEKS, default_capacity=CAPACITY, run_id="r2")
    assert deliver(any_db, actuals_feed(any_db), targets).sequence is None
    with any_db.begin() as conn:  # a later comparison found 5 h instead of 6 in that week
        conn.execute(
            sa.text(
                "UPDATE plan_actuals SET actual_hours = 5.0000, variance_hours = -2.5000 "
                "WHERE employee_id = 'E2' AND week_start = DATE '2026-11-02'"
            )
        )
    second = deliver(any_db, actuals_feed(any_db), targets)
    assert second.sequence == 2 and second.records == 1
    changed = (out / "plan_actuals_00000002.csv").read_text(encoding="utf-8")
    assert [",".join(r) for r in csv.reader(io.StringIO(changed))][1:] == [
        "E2,P5,2026-11-02,2026-W45,7.5000,5.0000,6.0000,-2.5000"
    ]
