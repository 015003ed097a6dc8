"""Resource plans against actuals: planned vs approved hours per employee, project and ISO week.

`compare_plans` replaces `plan_actuals` and `plan_capacity` (see `resource_plan_tables`) with
the comparison of one period, set-based in the staging database (DuckDB or PostgreSQL):

- **Plans** are the current, valid `assignments`. A week assignment plans its hours in its
  week (`week_start`, a Monday). A date-range assignment spreads its hours over the range's
  working days (Monday to Friday) equally: each ISO week gets hours x its working days in the
  range / all working days of the range, rounded to 0.0001 h on the running total (the
  week's share is round(H x days so far / days) - round(H x days before / days)), so the weeks
  add up to the planned hours exactly. Integer arithmetic in ten-thousandths of an hour:
  DuckDB divides decimals as floats. A planned amount is the week's hours x the planned
  bill rate, rounded to the cent per assignment and week (none without a rate).
- **Actuals** are `validated_time_entries` (approved, valid, current) by work date's ISO week:
  hours, of which billable, and their amounts.
- **Capacity**, per employee and week: the employee's `weekly_capacity_hours`, else the
  default (`STAGEPOST_WEEKLY_CAPACITY_HOURS`), for every active, valid employee in every week
  of the period and every other employee in the weeks they are planned or booked.
  **Utilization** is billable actual hours over capacity.

`plan_summary` reads the key figures back (over plan, under plan, burn, utilization), exact
decimals throughout, and `actuals_feed` is `plan_actuals` as the outbound feed of actuals for
the scheduling tool, delivered through `staging_models.outbound` (docs/resource_plans.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import sqlalchemy as sa

from staging_models.db import StagingDB
from staging_models.outbound import Feed

#: Ten-thousandths of an hour: the scale of every hours column.
_UNITS = 10_000
HOURS_ZERO = Decimal("0.0000")


@dataclass(frozen=True)
class Weeks:
    """The ISO weeks compared: Monday of the first to Monday of the last, inclusive."""

    first: date
    last: date

    @classmethod
    def covering(cls, date_from: date, date_to: date) -> Weeks:
        """Every ISO week that holds a day of `date_from`..`date_to`."""
        if date_to < date_from:
            raise ValueError(f"the period ends ({date_to}) before it starts ({date_from})")
        return cls(
            date_from - timedelta(days=date_from.weekday()),
            date_to - timedelta(days=date_to.weekday()),
        )

    @property
    def count(self) -> int:
        return (self.last - self.first).days // 7 + 1

    @property
    def last_day(self) -> date:
        return self.last + timedelta(days=6)

    def label(self) -> str:
        return f"weeks of {self.first.isoformat()} to {self.last.isoformat()} ({self.count})"


def _round_div(db: StagingDB, a: str, b: str) -> str:
    """round(a / b) half up, for whole numbers a >= 0 and b > 0, exactly in both dialects."""
    if db.is_duckdb:
        return f"((CAST({a} AS HUGEINT) * 2 + {b}) // (2 * CAST({b} AS HUGEINT)))"
    return f"div(CAST({a} AS NUMERIC) * 2 + {b}, 2 * CAST({b} AS NUMERIC))"


def _hours_of_units(units: str) -> str:
    return f"CAST({units} AS DECIMAL(18,0)) * CAST(0.0001 AS DECIMAL(5,4))"


def _plans_sql(db: StagingDB) -> str:
    """Planned hours and amounts per assignment and week of the period (params :first, :last)."""
    units = f"CAST(a.planned_hours * {_UNITS} AS BIGINT)"
    share = (
        f"{_round_div(db, 'r.units * r.days_to', 'r.days_all')} "
        f"- {_round_div(db, 'r.units * (r.days_to - r.days_in_week)', 'r.days_all')}"
    )
    return f"""
        WITH live AS (
            SELECT a.* FROM stg_assignments a
            WHERE a.is_current AND a.state = 'valid'
        ),
        days AS (  -- every working day of each range that reaches into the period
            SELECT a.row_key, a.employee_id, a.project_code, a.bill_rate, {units} AS units,
                   CAST(g.d AS DATE) AS day
            FROM live a CROSS JOIN LATERAL generate_series(
                CAST(a.start_date AS TIMESTAMP), CAST(a.end_date AS TIMESTAMP),
                INTERVAL '1 day') AS g(d)
            WHERE a.week_start IS NULL AND a.start_date <= CAST(:last AS DATE) + 6
              AND a.end_date >= CAST(:first AS DATE)
              AND extract(isodow FROM g.d) < 6
        ),
        range_weeks AS (
            SELECT row_key, employee_id, project_code, bill_rate, units,
                   CAST(date_trunc('week', day) AS DATE) AS week_start,
                   COUNT(*) AS days_in_week
            FROM days GROUP BY row_key, employee_id, project_code, bill_rate, units,
                               CAST(date_trunc('week', day) AS DATE)
        ),
        running AS (
            SELECT w.*,
                   SUM(w.days_in_week) OVER (PARTITION BY w.row_key ORDER BY w.week_start
                                             ROWS UNBOUNDED PRECEDING) AS days_to,
                   SUM(w.days_in_week) OVER (PARTITION BY w.row_key) AS days_all
            FROM range_weeks w
        ),
        spread AS (
            SELECT r.employee_id, r.project_code, r.week_start, r.bill_rate,
                   {_hours_of_units(share)} AS hours
            FROM running r
        ),
        planned AS (
            SELECT employee_id, project_code, week_start, planned_hours AS hours, bill_rate
            FROM live WHERE week_start IS NOT NULL
            UNION ALL
            SELECT employee_id, project_code, week_start, hours, bill_rate FROM spread
        )
        SELECT employee_id, project_code, week_start,
               SUM(hours) AS planned_hours,
               SUM(ROUND(hours * bill_rate, 2)) AS planned_amount
        FROM planned
        WHERE week_start BETWEEN CAST(:first AS DATE) AND CAST(:last AS DATE)
        GROUP BY employee_id, project_code, week_start
    """


_ACTUALS_SQL = """
    SELECT employee_id, project_code, CAST(date_trunc('week', work_date) AS DATE) AS week_start,
           MIN(legal_entity) AS legal_entity, MIN(currency) AS currency,
           SUM(hours) AS actual_hours,
           SUM(CASE WHEN billable THEN hours ELSE 0 END) AS billable_hours,
           SUM(amount) AS actual_amount
    FROM validated_time_entries
    WHERE work_date BETWEEN CAST(:first AS DATE) AND CAST(:last AS DATE) + 6
    GROUP BY employee_id, project_code, CAST(date_trunc('week', work_date) AS DATE)
"""

_PLAN_COLUMNS = (
    "employee_id, project_code, week_start, legal_entity, currency, planned_hours, "
    "actual_hours, billable_hours, variance_hours, planned_amount, actual_amount, "
    "computed_at, run_id"
)


def _weeks_sql() -> str:
    return """SELECT CAST(g.d AS DATE) AS week_start FROM generate_series(
                  CAST(CAST(:first AS DATE) AS TIMESTAMP), CAST(CAST(:last AS DATE) AS TIMESTAMP),
                  INTERVAL '7 days') AS g(d)"""


def compare_plans(
    db: StagingDB,
    weeks: Weeks,
    *,
    default_capacity: Decimal,
    run_id: str,
    now: datetime | None = None,
) -> int:
    """Replace `plan_actuals` and `plan_capacity` with the comparison of `weeks` (one
    transaction); returns the rows of `plan_actuals`."""
    if not isinstance(default_capacity, Decimal) or default_capacity <= 0:
        raise ValueError(f"the weekly capacity must be a Decimal above 0, not {default_capacity!r}")
    params = {
        "first": weeks.first,
        "last": weeks.last,
        "now": now or datetime.now(UTC),
        "run_id": run_id,
        "capacity": default_capacity,
    }
    zero = "CAST(0 AS DECIMAL(12,4))"
    with db.begin() as conn:
        conn.exec_driver_sql("DELETE FROM plan_actuals")
        conn.exec_driver_sql("DELETE FROM plan_capacity")
        conn.execute(
            sa.text(
                f"""INSERT INTO plan_actuals ({_PLAN_COLUMNS})
                WITH p AS ({_plans_sql(db)}), a AS ({_ACTUALS_SQL}),
                j AS (
                    SELECT coalesce(p.employee_id, a.employee_id) AS employee_id,
                           coalesce(p.project_code, a.project_code) AS project_code,
                           coalesce(p.week_start, a.week_start) AS week_start,
                           a.legal_entity, a.currency,
                           coalesce(p.planned_hours, {zero}) AS planned_hours,
                           coalesce(a.actual_hours, {zero}) AS actual_hours,
                           coalesce(a.billable_hours, {zero}) AS billable_hours,
                           p.planned_amount,
                           coalesce(a.actual_amount, CAST(0 AS DECIMAL(18,2))) AS actual_amount
                    FROM p FULL OUTER JOIN a ON a.employee_id = p.employee_id
                     AND a.project_code = p.project_code AND a.week_start = p.week_start
                )
                SELECT j.employee_id, j.project_code, j.week_start,
                       coalesce(j.legal_entity, pr.legal_entity),
                       coalesce(j.currency, pr.currency),
                       j.planned_hours, j.actual_hours, j.billable_hours,
                       j.actual_hours - j.planned_hours, j.planned_amount, j.actual_amount,
                       :now, :run_id
                FROM j LEFT JOIN stg_projects pr
                  ON pr.is_current AND pr.row_key = j.project_code"""
            ),
            params,
        )
        conn.execute(
            sa.text(
                f"""INSERT INTO plan_capacity (employee_id, week_start, legal_entity,
                        capacity_hours, capacity_source, computed_at, run_id)
                WITH ew AS (
                    SELECT e.row_key AS employee_id, w.week_start
                    FROM stg_employees e CROSS JOIN ({_weeks_sql()}) w
                    WHERE e.is_current AND e.state = 'valid' AND e.active
                    UNION
                    SELECT employee_id, week_start FROM plan_actuals
                )
                SELECT ew.employee_id, ew.week_start, e.legal_entity,
                       coalesce(e.weekly_capacity_hours, CAST(:capacity AS DECIMAL(12,4))),
                       CASE WHEN e.weekly_capacity_hours IS NULL THEN 'default'
                            ELSE 'employee' END,
                       :now, :run_id
                FROM ew LEFT JOIN stg_employees e ON e.is_current AND e.row_key = ew.employee_id"""
            ),
            params,
        )
        db.analyze(conn, "plan_actuals", "plan_capacity")
        return conn.execute(sa.text("SELECT COUNT(*) FROM plan_actuals")).scalar_one()


# -- reading it back ------------------------------------------------------------------------------


def _where(legal_entity: str | None, column: str = "legal_entity") -> tuple[str, dict]:
    if legal_entity is None:
        return "", {}
    return f" WHERE {column} = :le", {"le": legal_entity}


def by_week(db: StagingDB, legal_entity: str | None = None) -> pd.DataFrame:
    """Per week: planned, actual, billable hours and capacity (the employees' of
    `legal_entity`), with utilization (billable / capacity) as a percentage text."""
    where, params = _where(legal_entity)
    df = db.query_df(
        f"""WITH a AS (SELECT week_start, SUM(planned_hours) AS planned_hours,
                         SUM(actual_hours) AS actual_hours, SUM(billable_hours) AS billable_hours
                       FROM plan_actuals{where} GROUP BY week_start),
                 c AS (SELECT week_start, SUM(capacity_hours) AS capacity_hours
                       FROM plan_capacity{where} GROUP BY week_start)
            SELECT coalesce(a.week_start, c.week_start) AS week_start,
                   coalesce(a.planned_hours, 0) AS planned_hours,
                   coalesce(a.actual_hours, 0) AS actual_hours,
                   coalesce(a.billable_hours, 0) AS billable_hours,
                   coalesce(c.capacity_hours, 0) AS capacity_hours
            FROM a FULL OUTER JOIN c ON c.week_start = a.week_start
            ORDER BY 1""",
        params,
    )
    df = _hours(df, ["planned_hours", "actual_hours", "billable_hours", "capacity_hours"])
    df["variance_hours"] = df["actual_hours"] - df["planned_hours"]
    df["utilization"] = [
        share(b, c) for b, c in zip(df["billable_hours"], df["capacity_hours"], strict=True)
    ]
    return df[
        [
            "week_start",
            "planned_hours",
            "actual_hours",
            "variance_hours",
            "billable_hours",
            "capacity_hours",
            "utilization",
        ]
    ]


def by_project(db: StagingDB, legal_entity: str | None = None) -> pd.DataFrame:
    """Per project over the period: planned and actual hours, variance, burn (actual / planned)
    and whether it runs over plan (planned and actual above it) or has no plan at all."""
    where, params = _where(legal_entity)
    df = db.query_df(
        f"""SELECT project_code, MIN(legal_entity) AS legal_entity,
                   SUM(planned_hours) AS planned_hours, SUM(actual_hours) AS actual_hours,
                   SUM(billable_hours) AS billable_hours
            FROM plan_actuals{where} GROUP BY project_code ORDER BY project_code""",
        params,
    )
    df = _hours(df, ["planned_hours", "actual_hours", "billable_hours"])
    df["variance_hours"] = df["actual_hours"] - df["planned_hours"]
    df["burn"] = [share(a, p) for a, p in zip(df["actual_hours"], df["planned_hours"], strict=True)]
    df["plan_status"] = [
        _status(p, a) for p, a in zip(df["planned_hours"], df["actual_hours"], strict=True)
    ]
    return df


def by_employee(db: StagingDB, legal_entity: str | None = None) -> pd.DataFrame:
    """Per employee over the period (their own legal entity's capacity rows): capacity,
    planned, actual and billable hours, variance, utilization and over/under plan."""
    where, params = _where(legal_entity, "c.legal_entity")
    df = db.query_df(
        f"""WITH a AS (SELECT employee_id, SUM(planned_hours) AS planned_hours,
                              SUM(actual_hours) AS actual_hours,
                              SUM(billable_hours) AS billable_hours
                       FROM plan_actuals GROUP BY employee_id),
                 c AS (SELECT employee_id, MIN(legal_entity) AS legal_entity,
                              SUM(capacity_hours) AS capacity_hours
                       FROM plan_capacity GROUP BY employee_id)
            SELECT c.employee_id, c.legal_entity, c.capacity_hours,
                   coalesce(a.planned_hours, 0) AS planned_hours,
                   coalesce(a.actual_hours, 0) AS actual_hours,
                   coalesce(a.billable_hours, 0) AS billable_hours
            FROM c LEFT JOIN a ON a.employee_id = c.employee_id{where}
            ORDER BY c.employee_id""",
        params,
    )
    df = _hours(df, ["capacity_hours", "planned_hours", "actual_hours", "billable_hours"])
    df["variance_hours"] = df["actual_hours"] - df["planned_hours"]
    df["utilization"] = [
        share(b, c) for b, c in zip(df["billable_hours"], df["capacity_hours"], strict=True)
    ]
    df["plan_status"] = [
        _status(p, a) for p, a in zip(df["planned_hours"], df["actual_hours"], strict=True)
    ]
    return df


def detail(db: StagingDB, legal_entity: str | None = None) -> pd.DataFrame:
    """Every row of `plan_actuals` (of one legal entity's projects), in key order."""
    where, params = _where(legal_entity)
    df = db.query_df(
        f"""SELECT employee_id, project_code, week_start, legal_entity, currency, planned_hours,
                   actual_hours, variance_hours, billable_hours, planned_amount, actual_amount
            FROM plan_actuals{where} ORDER BY employee_id, project_code, week_start""",
        params,
    )
    return _hours(df, ["planned_hours", "actual_hours", "variance_hours", "billable_hours"])


def _hours(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Hours as Decimals with 4 places (SUM of nothing and coalesce give plain 0s)."""
    for c in columns:
        df[c] = [Decimal(v).quantize(HOURS_ZERO) for v in df[c]]
    return df


def share(numerator: Decimal, denominator: Decimal) -> str | None:
    """`numerator / denominator` as a percentage with two decimals, half up as
    `staging_models.figures.rate` (`87.50%`); None over 0."""
    if not denominator:
        return None
    pct = (Decimal(numerator) * 100 / Decimal(denominator)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"{pct}%"


PLAN_STATUSES = ("over_plan", "under_plan", "on_plan", "unplanned")


def _status(planned: Decimal, actual: Decimal) -> str:
    """over_plan: planned and booked more; under_plan: booked less than planned; unplanned:
    booked without a plan; on_plan: exactly as planned."""
    if planned == 0:
        return "unplanned" if actual > 0 else "on_plan"
    if actual > planned:
        return "over_plan"
    return "under_plan" if actual < planned else "on_plan"


@dataclass(frozen=True)
class PlanSummary:
    """The period's key figures: exact hours, counts, percentages as text."""

    planned_hours: Decimal
    actual_hours: Decimal
    billable_hours: Decimal
    capacity_hours: Decimal
    projects: pd.DataFrame
    employees: pd.DataFrame

    @property
    def utilization(self) -> str | None:
        return share(self.billable_hours, self.capacity_hours)

    @property
    def burn(self) -> str | None:
        """Actual hours of planned projects over their planned hours."""
        planned = self.projects[self.projects["planned_hours"] > 0]
        return share(
            sum(planned["actual_hours"], HOURS_ZERO), sum(planned["planned_hours"], HOURS_ZERO)
        )

    def _named(self, frame: pd.DataFrame, key: str, status: str) -> list[str]:
        return sorted(frame.loc[frame["plan_status"] == status, key])

    @property
    def projects_over_plan(self) -> list[str]:
        return self._named(self.projects, "project_code", "over_plan")

    @property
    def projects_unplanned(self) -> list[str]:
        return self._named(self.projects, "project_code", "unplanned")

    @property
    def people_over_plan(self) -> list[str]:
        return self._named(self.employees, "employee_id", "over_plan")

    @property
    def people_under_plan(self) -> list[str]:
        return self._named(self.employees, "employee_id", "under_plan")


def plan_summary(db: StagingDB, legal_entity: str | None = None) -> PlanSummary:
    """Key figures of the stored comparison (of one legal entity: its projects' hours, its
    employees' capacity and plan status)."""
    projects = by_project(db, legal_entity)
    employees = by_employee(db, legal_entity)
    where, params = _where(legal_entity)
    capacity = db.scalar(f"SELECT SUM(capacity_hours) FROM plan_capacity{where}", params)
    return PlanSummary(
        planned_hours=sum(projects["planned_hours"], HOURS_ZERO),
        actual_hours=sum(projects["actual_hours"], HOURS_ZERO),
        billable_hours=sum(projects["billable_hours"], HOURS_ZERO),
        capacity_hours=Decimal(capacity or 0).quantize(HOURS_ZERO),
        projects=projects,
        employees=employees,
    )


# -- the outbound actuals file --------------------------------------------------------------------

#: The columns of the actuals file for the scheduling tool, in order (docs/resource_plans.md).
OUTBOUND_COLUMNS = (
    "employee_id",
    "project_code",
    "week_start",
    "iso_week",
    "planned_hours",
    "actual_hours",
    "billable_hours",
    "variance_hours",
)


#: The feed's name: its files are `plan_actuals_<sequence>.csv|jsonl|manifest.json`.
ACTUALS_FEED = "plan_actuals"


def actuals_feed(db: StagingDB) -> Feed:
    """The outbound actuals for the scheduling tool as a feed of `staging_models.outbound`
    (delivered like the status feedback: whole files with a sequence number and hashes, only
    what changed since the last delivery): `OUTBOUND_COLUMNS`, one record per employee,
    project and week of the last comparison; hours exact with 4 decimals, the ISO week as
    `2026-W45`."""
    iso_week = (
        "strftime(week_start, '%G-W%V')"
        if db.is_duckdb
        else """to_char(week_start, 'IYYY-"W"IW')"""
    )
    sql = f"""SELECT employee_id, project_code, week_start, {iso_week} AS iso_week,
                     planned_hours, actual_hours, billable_hours, variance_hours
              FROM plan_actuals"""
    return Feed(ACTUALS_FEED, ("employee_id", "project_code", "week_start"), sql)
