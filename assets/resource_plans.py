"""Resource plans against actuals: the assignments' validation and the plan-vs-actual asset.

`validated_assignments` runs the ASG_* contract after the assignments land (validation group:
the nightly, main and re-validation jobs run it). `plan_vs_actual` (reconciliation group: the
reconciliation job runs it before the workbook) compares the valid plans with approved time
per employee, project and ISO week into `plan_actuals` and `plan_capacity`
(`staging_models.resource_plans`), and reports the key figures, exact, as run metadata.
`plan_actuals` is then delivered as the outbound actuals for the scheduling tool, row for row,
through the status feedback's machinery (`actuals_feed`; docs/resource_plans.md).
"""

from datetime import UTC, date, datetime

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from assets.ingestion import landed_asset_key
from assets.metadata_tables import md_table
from assets.pools import RECONCILIATION, STAGING_WRITE
from assets.validation import GROUP as VALIDATION
from assets.validation import (
    MASTER,
    _conservation_result,
    validated_master_data,
    validated_time_entries,
)
from assets.validation import _metadata as validation_metadata
from config.settings import current
from resources.feedback import OutboundDelivery
from resources.staging import StagingDatabase
from staging_models.figures import decimal_text
from staging_models.outbound import deliver
from staging_models.resource_plans import (
    PlanSummary,
    Weeks,
    actuals_feed,
    by_week,
    compare_plans,
    plan_summary,
)
from staging_models.validation import validate_all

#: The group of the reconciliation assets (`assets.reconciliation.GROUP`; not imported:
#: that module imports this one).
RECONCILIATION_GROUP = "reconciliation"


@asset(
    group_name=VALIDATION,
    pool=STAGING_WRITE,
    kinds={"pandera", "sql"},
    deps=[AssetKey(landed_asset_key("assignments")), validated_master_data],
    description=(
        "Resource plans (assignments) checked against their contract (ASG_* rules): valid "
        "ones are planned in plan vs actual, the others wait in the quarantine."
    ),
)
def validated_assignments(
    context: AssetExecutionContext, staging: StagingDatabase
) -> MaterializeResult:
    results = validate_all(
        staging.get_db(), actor=f"run {context.run.run_id}", datasets=("assignments",)
    )
    return MaterializeResult(metadata=validation_metadata(results))


@asset_check(
    asset=validated_assignments,
    blocking=True,
    description=(
        "Every assignment row read is landed and every version is exactly one of valid, "
        "quarantined, superseded or deleted (not postable)."
    ),
)
def assignments_accounted_for(staging: StagingDatabase) -> AssetCheckResult:
    return _conservation_result(staging, (*MASTER, "time_entries", "assignments"))


class PlanVsActualConfig(Config):
    date_from: str = Field(
        default="",
        description="YYYY-MM-DD; its ISO week is the first compared; empty: the week of the "
        "1st of the month `months_back` months ago",
    )
    date_to: str = Field(
        default="", description="YYYY-MM-DD; its ISO week is the last compared; empty: today"
    )
    months_back: int = Field(default=2, description="Default period: this and N earlier months")


def resolve_weeks(config: PlanVsActualConfig, today: date) -> Weeks:
    """The ISO weeks covering the configured period (by default the reconciliation's)."""
    if config.date_from:
        start = date.fromisoformat(config.date_from)
    else:
        months = today.year * 12 + today.month - 1 - config.months_back
        start = date(months // 12, months % 12 + 1, 1)
    end = date.fromisoformat(config.date_to) if config.date_to else today
    return Weeks.covering(start, end)


def _hours_of(summary: PlanSummary, frame_name: str, key: str, status: str) -> dict[str, str]:
    """Who is over (under) plan, with actual and planned hours, exactly."""
    frame = getattr(summary, frame_name)
    rows = frame[frame["plan_status"] == status]
    return {
        str(k): f"{decimal_text(a)} h of {decimal_text(p)} h planned"
        for k, a, p in zip(rows[key], rows["actual_hours"], rows["planned_hours"], strict=True)
    }


def plan_metadata(weeks: Weeks, rows: int, summary: PlanSummary, weekly: pd.DataFrame) -> dict:
    """The key figures for the UI: hours as exact text, percentages as in the workbook."""
    return {
        "weeks": weeks.label(),
        "plan_actual_rows": rows,
        "staging_table": "plan_actuals",
        "planned_hours": decimal_text(summary.planned_hours),
        "actual_hours": decimal_text(summary.actual_hours),
        "billable_hours": decimal_text(summary.billable_hours),
        "capacity_hours": decimal_text(summary.capacity_hours),
        "utilization": summary.utilization or "no capacity",
        "plan_burn": summary.burn or "nothing planned",
        "projects_over_plan": len(summary.projects_over_plan),
        "projects_without_plan": len(summary.projects_unplanned),
        "people_over_plan": len(summary.people_over_plan),
        "people_under_plan": len(summary.people_under_plan),
        "projects_over_plan_hours": MetadataValue.json(
            _hours_of(summary, "projects", "project_code", "over_plan")
        ),
        "people_over_plan_hours": MetadataValue.json(
            _hours_of(summary, "employees", "employee_id", "over_plan")
        ),
        "people_under_plan_hours": MetadataValue.json(
            _hours_of(summary, "employees", "employee_id", "under_plan")
        ),
        "by_week": md_table(weekly),
    }


@asset(
    group_name=RECONCILIATION_GROUP,
    pool=RECONCILIATION,
    kinds={"sql"},
    deps=[validated_assignments, validated_time_entries],
    description=(
        "Resource plans against approved time per employee, project and ISO week: planned, "
        "actual and billable hours, capacity and utilization (tables plan_actuals, the "
        "outbound actuals for the scheduling tool, and plan_capacity)."
    ),
)
def plan_vs_actual(
    context: AssetExecutionContext,
    config: PlanVsActualConfig,
    staging: StagingDatabase,
    outbound: OutboundDelivery,
) -> MaterializeResult:
    db = staging.get_db()
    weeks = resolve_weeks(config, datetime.now(UTC).date())
    rows = compare_plans(
        db,
        weeks,
        default_capacity=current().weekly_capacity_hours,
        run_id=context.run.run_id,
    )
    context.log.info(f"plan vs actual: {rows} rows for the {weeks.label()}")
    metadata = plan_metadata(weeks, rows, plan_summary(db), by_week(db))
    # The actuals for the scheduling tool, delivered like the status feedback (changed only).
    targets = outbound.targets()
    try:
        sent = deliver(db, actuals_feed(db), targets)
    finally:
        close = getattr(targets.folder, "close", None)
        if close:
            close()
    context.log.info(f"{sent.feed}: {sent.message}")
    metadata["actuals_delivery"] = sent.message
    metadata["actuals_files"] = MetadataValue.json(sent.files)
    return MaterializeResult(metadata=metadata)


resource_plan_assets = [validated_assignments, plan_vs_actual]
resource_plan_checks = [assignments_accounted_for]
