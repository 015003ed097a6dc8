"""API source jobs and schedules: per vendor, time entries hourly (xx:05) and, nightly
(01:45), master data and, for vendors without deletions, a full pull of the recent range;
each followed by validation. All schedules start stopped: switch on the configured vendors."""

from __future__ import annotations

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from assets.api_ingestion import (
    FULL_PULL_VENDORS,
    MASTER_DATASETS,
    ApiPullConfig,
    master_data_key,
    time_entries_key,
)
from assets.validation import GROUP as VALIDATION
from assets.validation import validated_time_entries
from config.settings import current
from pipelines.launchpad import ops_only
from resources.settings import API_VENDORS

TIMEZONE = current().timezone


def _hourly_job(vendor: str):
    return define_asset_job(
        f"{vendor}_api_hourly_job",
        selection=AssetSelection.assets(time_entries_key(vendor))
        | AssetSelection.assets(validated_time_entries),
        config=ops_only({time_entries_key(vendor): ApiPullConfig}),
        description=f"Pull the {vendor} API's changed time entries, then validate them.",
    )


def _nightly_job(vendor: str):
    keys = [master_data_key(vendor)] if vendor in MASTER_DATASETS else []
    config = ops_only()
    if vendor in FULL_PULL_VENDORS:
        keys.append(time_entries_key(vendor))
        config = ops_only(
            {time_entries_key(vendor): ApiPullConfig},
            defaults={time_entries_key(vendor): {"full": True}},
        )
    return define_asset_job(
        f"{vendor}_api_nightly_job",
        selection=AssetSelection.assets(*keys) | AssetSelection.groups(VALIDATION),
        config=config,
        description=(
            f"Pull the {vendor} API's "
            + ("master data and " if vendor in MASTER_DATASETS else "")
            + "time entries of the recent range in full (a full export: deletions become "
            "tombstones), then re-validate everything."
            + (
                " Toggl: in workspace mode (STAGEPOST_TOGGL_WORKSPACE_ID); with /me, which "
                "reports deletions, the changes only."
                if vendor == "toggl"
                else ""
            )
        ),
    )


api_hourly_jobs = {v: _hourly_job(v) for v in API_VENDORS}
api_nightly_jobs = {
    v: _nightly_job(v) for v in API_VENDORS if v in FULL_PULL_VENDORS or v in MASTER_DATASETS
}
api_jobs = [*api_hourly_jobs.values(), *api_nightly_jobs.values()]

api_schedules = [
    ScheduleDefinition(
        name=f"{v}_api_hourly",
        job=job,
        cron_schedule="5 * * * *",
        execution_timezone=TIMEZONE,
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"Pulls the {v} API's changed time entries at five past every hour.",
    )
    for v, job in api_hourly_jobs.items()
] + [
    ScheduleDefinition(
        name=f"{v}_api_nightly",
        job=job,
        cron_schedule="45 1 * * *",
        execution_timezone=TIMEZONE,
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"Pulls the {v} API's master data and recent range in full at 01:45.",
    )
    for v, job in api_nightly_jobs.items()
]
