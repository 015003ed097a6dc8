"""Plan vs actual in the controllers' workbook: its sheets, chart and key figures.

Read from the stored comparison (`plan_actuals`, `plan_capacity`; written by
`staging_models.resource_plans.compare_plans`), for all legal entities or one: a weekly sheet
with a column chart of planned, actual and billable hours and capacity, a sheet per project
(burn, over plan), per person (utilization, over or under plan) and the detail per employee,
project and week. Hours are exact decimals (shown `0.00`), percentages text as in the UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from reconciliation.workbook import SheetChart
from staging_models import resource_plans
from staging_models.db import StagingDB

WEEK_SHEET = "Plan vs actual"
PROJECT_SHEET = "Plan vs actual by project"
PEOPLE_SHEET = "Plan vs actual by person"
DETAIL_SHEET = "Plan vs actual detail"

#: Headers of the plan sheets' columns (the workbook decides each column's kind by its name).
HEADERS: dict[str, str] = {
    "week_start": "Week (Monday)",
    "planned_hours": "Planned hours",
    "actual_hours": "Actual hours",
    "variance_hours": "Hours: actual - planned",
    "billable_hours": "Billable hours",
    "capacity_hours": "Capacity hours",
    "utilization": "Utilization (billable / capacity)",
    "burn": "Burn (actual / planned)",
    "plan_status": "Against plan",
    "planned_amount": "Planned amount",
    "actual_amount": "Actual amount",
}
STATUS_WORDS = {
    "over_plan": "Over plan",
    "under_plan": "Under plan",
    "on_plan": "On plan",
    "unplanned": "No plan",
}
WEEK_CHART = SheetChart(
    title="Hours by week: planned, actual, billable, capacity",
    categories="week_start",
    values=("planned_hours", "actual_hours", "billable_hours", "capacity_hours"),
)


@dataclass(frozen=True)
class PlanSheets:
    """What the workbook adds for plan vs actual: sheets in order, their charts, key figures."""

    sheets: dict[str, pd.DataFrame]
    charts: dict[str, SheetChart]
    key_figures: list[tuple[str, object]]
    headers: dict[str, str] = field(default_factory=lambda: dict(HEADERS))


def has_plans(db: StagingDB) -> bool:
    """Whether any resource plan is valid: without one, the workbook leaves the sheets out."""
    return bool(
        db.scalar("SELECT COUNT(*) FROM stg_assignments WHERE is_current AND state = 'valid'")
    )


def _words(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(plan_status=frame["plan_status"].map(STATUS_WORDS))


def key_figures(summary: resource_plans.PlanSummary) -> list[tuple[str, object]]:
    """The summary sheet's plan-vs-actual figures, in reading order."""
    return [
        ("Plan vs actual: planned hours", summary.planned_hours),
        ("Plan vs actual: actual hours", summary.actual_hours),
        ("Plan vs actual: billable hours", summary.billable_hours),
        ("Plan vs actual: capacity hours", summary.capacity_hours),
        ("Utilization (billable / capacity)", summary.utilization or "no capacity"),
        ("Plan burn (actual / planned, planned projects)", summary.burn or "nothing planned"),
        ("Projects over plan", len(summary.projects_over_plan)),
        ("Projects booked without a plan", len(summary.projects_unplanned)),
        ("People over plan", len(summary.people_over_plan)),
        ("People under plan", len(summary.people_under_plan)),
    ]


def plan_sheets(db: StagingDB, legal_entity: str | None = None) -> PlanSheets:
    """The plan-vs-actual sheets of the stored comparison (of one legal entity's projects and
    people, or of all with None)."""
    summary = resource_plans.plan_summary(db, legal_entity)
    projects = _words(summary.projects)[
        [
            "project_code",
            "legal_entity",
            "planned_hours",
            "actual_hours",
            "variance_hours",
            "billable_hours",
            "burn",
            "plan_status",
        ]
    ]
    people = _words(summary.employees)[
        [
            "employee_id",
            "legal_entity",
            "capacity_hours",
            "planned_hours",
            "actual_hours",
            "variance_hours",
            "billable_hours",
            "utilization",
            "plan_status",
        ]
    ]
    return PlanSheets(
        sheets={
            WEEK_SHEET: resource_plans.by_week(db, legal_entity),
            PROJECT_SHEET: projects,
            PEOPLE_SHEET: people,
            DETAIL_SHEET: resource_plans.detail(db, legal_entity),
        },
        charts={WEEK_SHEET: WEEK_CHART},
        key_figures=key_figures(summary),
    )
