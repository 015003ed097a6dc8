"""When reconciliation runs: nightly, and after every posting window.

Kept apart from `pipelines.definitions` (the lead wires it in): a job over the
`reconciliation` group, a nightly schedule, and an asset sensor that starts a
reconciliation whenever the posting asset materializes (one run per posting window).
"""

from __future__ import annotations

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    EventLogEntry,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    asset_sensor,
    define_asset_job,
)

from assets.posting import posting_window
from assets.reconciliation import GROUP, ReconciliationConfig, WorkbookConfig
from assets.resource_plans import PlanVsActualConfig
from pipelines.launchpad import ops_only
from pipelines.schedules import TIMEZONE

#: The asset a posting window materializes: taken from its definition, so renaming the asset
#: cannot leave this sensor watching a key nothing materializes.
POSTING_ASSET_KEY = posting_window.key

reconciliation_job = define_asset_job(
    "reconciliation_job",
    selection=AssetSelection.groups(GROUP),
    config=ops_only(
        {
            "reconciliation": ReconciliationConfig,
            "reconciliation_workbook": WorkbookConfig,
            "plan_vs_actual": PlanVsActualConfig,
        }
    ),
    description=(
        "Reconcile PSA, staging and ERP; compare resource plans with actuals; store the "
        "results; write the workbooks."
    ),
)

reconciliation_nightly = ScheduleDefinition(
    name="reconciliation_nightly",
    job=reconciliation_job,
    cron_schedule="30 3 * * *",
    execution_timezone=TIMEZONE,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Reconciles at 03:30, after the nightly master-data run.",
)


@asset_sensor(
    asset_key=POSTING_ASSET_KEY,
    job=reconciliation_job,
    name="reconcile_after_posting",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Reconciles after every posting window (each materialization of the posting asset).",
)
def reconcile_after_posting(context: SensorEvaluationContext, asset_event: EventLogEntry):
    yield RunRequest(
        run_key=f"after-posting-{asset_event.run_id or 'runless'}-{asset_event.timestamp}"
    )


reconciliation_schedules = [reconciliation_nightly]
reconciliation_sensors = [reconcile_after_posting]
