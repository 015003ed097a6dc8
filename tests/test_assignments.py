"""The `assignments` dataset (resource plans): landing, versions and its contract, rule by rule.

Every ASG_* rule fires on one bad row, on DuckDB and on PostgreSQL; every row ends in exactly
one state; a good row (a week or a date range) is valid; a deleted assignment is a tombstone
(`not_postable`); the pandera schema flags exactly the rows the SQL flags for row-level rules.
"""

from __future__ import annotations

from pathlib import Path

import pandera.pandas as pa
import pytest

from staging_models.contracts import RULES, WEEK_MAX_PLANNED_HOURS, pandera_schema
from staging_models.db import StagingDB
from staging_models.validation import conservation
from tests.support.plan_world import assignment
from tests.support.staging_helpers import World

#: (rule code, the bad values) on top of a good week assignment of E1 on P1.
CASES: list[tuple[str, dict[str, str]]] = [
    ("ASG_KEY_MISSING", dict(assignment_id="")),
    ("ASG_EMPLOYEE_ID_MISSING", dict(employee_id="")),
    ("ASG_PROJECT_CODE_MISSING", dict(project_code="")),
    ("ASG_PLANNED_HOURS_MISSING", dict(planned_hours="")),
    ("ASG_PLANNED_HOURS_FORMAT", dict(planned_hours="eight")),
    ("ASG_WEEK_START_FORMAT", dict(week_start="2026-13-02")),
    ("ASG_START_DATE_FORMAT", dict(week_start="", start_date="soon", end_date="2026-11-20")),
    ("ASG_END_DATE_FORMAT", dict(week_start="", start_date="2026-11-02", end_date="later")),
    ("ASG_BILL_RATE_FORMAT", dict(bill_rate="12,5.0")),
    ("ASG_UPDATED_AT_FORMAT", dict(updated_at="yesterday")),
    ("ASG_DELETED_FORMAT", dict(deleted="maybe")),
    ("ASG_PERIOD_MISSING", dict(week_start="", start_date="2026-11-02", end_date="")),
    ("ASG_PERIOD_TWICE", dict(start_date="2026-11-02", end_date="2026-11-06")),
    ("ASG_WEEK_NOT_MONDAY", dict(week_start="2026-11-04")),
    ("ASG_DATES_INVERTED", dict(week_start="", start_date="2026-11-20", end_date="2026-11-02")),
    ("ASG_RANGE_TOO_LONG", dict(week_start="", start_date="2026-01-01", end_date="2028-06-30")),
    ("ASG_NO_WORKING_DAYS", dict(week_start="", start_date="2026-11-07", end_date="2026-11-08")),
    ("ASG_HOURS_NEGATIVE", dict(planned_hours="-4")),
    ("ASG_HOURS_OVER_WEEK_MAX", dict(planned_hours=str(WEEK_MAX_PLANNED_HOURS + 1))),
    # A range: 2 working days, 33 h is 16.5 h a working day (the maximum is 80 / 5 = 16).
    (
        "ASG_HOURS_OVER_WEEK_MAX",
        dict(week_start="", start_date="2026-11-05", end_date="2026-11-06", planned_hours="33"),
    ),
    ("ASG_RATE_NEGATIVE", dict(bill_rate="-1.00")),
    ("ASG_RATE_NOT_CENTS", dict(bill_rate="120.125")),
    ("ASG_UNKNOWN_EMPLOYEE", dict(employee_id="E404")),
    ("ASG_UNKNOWN_PROJECT", dict(project_code="P404")),
    ("ASG_UNKNOWN_TASK", dict(task_code="T404")),
    ("ASG_DUPLICATE_CONFLICT", dict(_twice="1", planned_hours="12")),
]


def _rows(values: dict[str, str]) -> list[dict[str, str]]:
    values = dict(values)
    if values.pop("_twice", None):
        return [assignment(assignment_id="AX"), assignment(assignment_id="AX", **values)]
    return [assignment(**{"assignment_id": "AX", **values})]


@pytest.mark.parametrize("code,values", CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_bad_assignment_is_quarantined_with_its_rule(
    duck_db: StagingDB, tmp_path: Path, code: str, values: dict[str, str]
) -> None:
    world = World(duck_db, tmp_path).master()
    world.land("assignments", _rows(values))
    world.validate()
    fired = duck_db.query_df(
        "SELECT row_key, rule_codes, messages, status FROM quarantine WHERE dataset = 'assignments'"
    )
    codes = {c for text in fired["rule_codes"] for c in text.split(",")}
    assert code in codes, f"{code} did not fire; the quarantine holds {sorted(codes)}"
    assert (fired["status"] == "open").all()
    assert fired["messages"].str.len().gt(0).all()
    assert conservation(duck_db)["ok"].all()


def test_every_assignment_rule_has_a_case() -> None:
    assert {r.code for r in RULES["assignments"]} == {c for c, _ in CASES}


def test_messages_say_what_is_wrong(duck_db: StagingDB, tmp_path: Path) -> None:
    world = World(duck_db, tmp_path).master()
    world.land(
        "assignments",
        [
            assignment(assignment_id="M1", week_start="2026-11-04"),
            assignment(
                assignment_id="M2", week_start="", start_date="2026-11-20", end_date="2026-11-02"
            ),
            assignment(assignment_id="M3", bill_rate="120.125"),
        ],
    )
    world.validate()
    msgs = dict(
        duck_db.query_df(
            "SELECT row_key, messages FROM quarantine WHERE dataset = 'assignments'"
        ).itertuples(index=False)
    )
    assert msgs["M1"] == "week_start 2026-11-04 is not a Monday (ISO weeks start on Monday)"
    assert msgs["M2"] == "end_date 2026-11-02 is before start_date 2026-11-20"
    assert msgs["M3"] == "bill rate '120.1250' is not to the cent (2 decimals at most)"


def test_good_assignments_are_valid_on_both_backends(any_db: StagingDB, tmp_path: Path) -> None:
    """A week, a range, a project-wide one (no task) and the whole catalogue of bad rows: the
    same states and rule codes on DuckDB and PostgreSQL, every row in exactly one state."""
    world = World(any_db, tmp_path).master()
    good = [
        assignment(assignment_id="G1"),
        assignment(
            assignment_id="G2", week_start="", start_date="2026-11-04", end_date="2026-11-17"
        ),
        assignment(assignment_id="G3", task_code="", bill_rate="", planned_hours="0"),
        assignment(assignment_id="G4", planned_hours=str(WEEK_MAX_PLANNED_HOURS)),
    ]
    bad = [
        assignment(**{**v, "assignment_id": f"B{i}"})
        for i, (c, v) in enumerate(CASES)
        if "_twice" not in v and c != "ASG_KEY_MISSING"
    ]
    world.land("assignments", good + bad)
    world.validate()
    for g in ("G1", "G2", "G3", "G4"):
        assert world.state(g, "assignments") == "valid", world.codes(g, "assignments")
    for i, (code, v) in enumerate(CASES):
        if "_twice" not in v and code != "ASG_KEY_MISSING":
            assert code in world.codes(f"B{i}", "assignments"), code
    df = conservation(any_db)
    assert df["ok"].all(), df.to_dict("records")
    row = df[df["dataset"] == "assignments"].iloc[0]
    assert row["valid"] == 4 and row["quarantined"] == len(bad)


def test_a_deleted_assignment_is_a_tombstone(duck_db: StagingDB, tmp_path: Path) -> None:
    world = World(duck_db, tmp_path).master()
    world.land("assignments", [assignment(assignment_id="D1")])
    world.validate()
    assert world.state("D1", "assignments") == "valid"
    world.land("assignments", [assignment(assignment_id="D1", deleted="true")])
    world.validate()
    assert world.state("D1", "assignments") == "not_postable"
    versions = duck_db.query_df("SELECT version, state FROM stg_assignments ORDER BY version")
    assert versions.values.tolist() == [[1, "superseded"], [2, "not_postable"]]
    assert conservation(duck_db)["ok"].all()


def test_same_content_again_is_no_new_version(duck_db: StagingDB, tmp_path: Path) -> None:
    """Only `updated_at` changed: nothing new (it is left out of the content hash)."""
    world = World(duck_db, tmp_path).master()
    world.land("assignments", [assignment(assignment_id="V1")])
    world.land("assignments", [assignment(assignment_id="V1", updated_at="2026-10-21T10:00:00Z")])
    assert duck_db.scalar("SELECT COUNT(*) FROM stg_assignments") == 1


def test_employee_capacity_column_is_optional(duck_db: StagingDB, tmp_path: Path) -> None:
    """Employees files without `weekly_capacity_hours` still land; with it, it is kept, and a
    value that is not hours is quarantined (EMP_WEEKLY_CAPACITY_HOURS_FORMAT)."""
    from tests.support.staging_helpers import EMPLOYEES

    world = World(duck_db, tmp_path).master()
    assert duck_db.scalar("SELECT COUNT(*) FROM stg_employees WHERE state = 'valid'") == 0
    world.validate()
    assert duck_db.scalar("SELECT COUNT(*) FROM stg_employees WHERE state = 'valid'") == 2
    world.land(
        "employees",
        [
            {**EMPLOYEES[0], "weekly_capacity_hours": "37.5"},
            {**EMPLOYEES[1], "weekly_capacity_hours": "lots"},
        ],
    )
    world.validate()
    assert duck_db.scalar(
        "SELECT weekly_capacity_hours FROM stg_employees WHERE row_key = 'E1' AND is_current"
    ) == pytest.approx(37.5)
    assert "EMP_WEEKLY_CAPACITY_HOURS_FORMAT" in world.codes("E2", "employees")


def test_pandera_flags_exactly_what_the_sql_quarantines(duck_db: StagingDB, tmp_path: Path) -> None:
    world = World(duck_db, tmp_path).master()
    rows = [
        assignment(**{**v, "assignment_id": f"B{i}"})
        for i, (c, v) in enumerate(CASES)
        if "_twice" not in v and c != "ASG_KEY_MISSING"
    ]
    rows += [assignment(assignment_id=f"OK{i}") for i in range(3)]
    world.land("assignments", rows)
    world.validate()
    frame = duck_db.query_df(
        """SELECT s.*, l.raw_week_start, l.raw_start_date, l.raw_end_date, l.raw_planned_hours,
                  l.raw_bill_rate, l.raw_updated_at, l.raw_deleted
           FROM stg_assignments s JOIN land_assignments l
             ON l.load_id = s.load_id AND l.row_no = s.row_no
           WHERE s.is_current"""
    )
    with pytest.raises(pa.errors.SchemaErrors) as err:
        pandera_schema("assignments").validate(frame, lazy=True)
    fc = err.value.failure_cases.dropna(subset=["index"])
    by_pandera = {
        (frame.loc[int(i), "row_key"], check)
        for check, i in zip(fc["check"], fc["index"], strict=True)
    }
    row_level = {r.code for r in RULES["assignments"] if r.check is not None}
    sql = duck_db.query_df(
        "SELECT row_key, rule_code FROM quarantine_violations WHERE dataset = 'assignments'"
    )
    by_sql = {(k, c) for k, c in sql.itertuples(index=False) if c in row_level}
    assert by_sql
    assert by_pandera == by_sql


def test_the_sample_plans_are_valid(duck_db: StagingDB, tmp_path: Path) -> None:
    """The generated sample's assignments (`python -m connectors.sample_data`) pass the
    contract: one range per employee and project over the time-entry window."""
    from datetime import UTC, date, datetime

    from connectors.sample_data import write_sample
    from connectors.sources.base import dataset_of
    from staging_models.landing import land_file
    from staging_models.validation import validate_all

    files = write_sample(tmp_path / "inbox", 300, seed=5, as_of=date(2026, 11, 20))
    for name in ("employees", "projects", "project_tasks", "assignments"):
        land_file(duck_db, files[name], dataset_of(files[name].name))
    validate_all(duck_db, now=datetime(2026, 11, 20, 18, 0, tzinfo=UTC))
    states = duck_db.query_df("SELECT state, COUNT(*) AS n FROM stg_assignments GROUP BY state")
    assert dict(zip(states["state"], states["n"], strict=True)).keys() == {"valid"}
    assert duck_db.scalar("SELECT COUNT(*) FROM stg_assignments") > 0
