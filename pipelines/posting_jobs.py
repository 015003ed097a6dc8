"""The posting window job (one window per legal entity at a time: tag stagepost/legal_entity,
limited per value in dagster.yaml) and an optional weekday schedule, off by default."""

from __future__ import annotations

from datetime import timedelta

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunConfig,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from assets.posting import (
    ALL_ENTITIES,
    ENTITY_TAG,
    POSTING_ASSET,
    POSTING_JOB,
    WINDOW_TAG,
    PostingWindowConfig,
    posting_window,
)
from assets.revenue import (
    REVENUE_ASSET,
    REVENUE_JOB,
    REVENUE_WINDOW_ASSET,
    RevenueConfigFields,
    RevenueWindowConfig,
    revenue_recognized,
    revenue_window,
)
from pipelines.launchpad import ops_only
from pipelines.schedules import TIMEZONE

#: `all` unless the Launchpad's tags say which one legal entity the window posts.
POSTING_TAGS = {ENTITY_TAG: ALL_ENTITIES}
SCHEDULE_OPERATOR = "schedule posting_window_weekdays"

posting_window_job = define_asset_job(
    POSTING_JOB,
    selection=AssetSelection.assets(posting_window),
    tags=POSTING_TAGS,
    # The Launchpad shows the window's fields only (a dry run of everything not yet posted
    # by default); the ERP and the posting policy are deployment settings, not its fields.
    config=ops_only({POSTING_ASSET: PostingWindowConfig}),
    description="Post validated time and released invoices to the ERP (dry run by default).",
)


@schedule(
    name="posting_window_weekdays",
    job=posting_window_job,
    cron_schedule="30 17 * * 1-5",
    execution_timezone=TIMEZONE,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Weekdays 17:30: post everything validated up to yesterday (a real window).",
)
def posting_window_weekdays(context: ScheduleEvaluationContext) -> RunRequest:
    day = context.scheduled_execution_time.date()
    config = PostingWindowConfig(
        dry_run=False,
        date_to=(day - timedelta(days=1)).isoformat(),
        operator=SCHEDULE_OPERATOR,
        note=f"scheduled window {day.isoformat()}",
    )
    return RunRequest(
        run_key=f"posting-{day.isoformat()}",
        run_config=RunConfig(ops={POSTING_ASSET: config}),
        tags={**POSTING_TAGS, WINDOW_TAG: "post"},  # the step sets it too; here from the queue
    )


#: Revenue journals and WIP accruals: a job of its own (docs/revenue.md says why), under the
#: same per-entity run limit as posting windows (they share the staging lock too).
revenue_window_job = define_asset_job(
    REVENUE_JOB,
    selection=AssetSelection.assets(revenue_recognized, revenue_window),
    tags=POSTING_TAGS,
    config=ops_only(
        {REVENUE_ASSET: RevenueConfigFields, REVENUE_WINDOW_ASSET: RevenueWindowConfig}
    ),
    description="Compute recognized revenue and post its journals and WIP accruals (dry run "
    "by default).",
)

posting_schedules = [posting_window_weekdays]
