"""Backup and retention as Dagster jobs (their ops: `assets/maintenance.py`), and schedules.

With DuckDB staging only one process may open the file, so the operations commands (`commands.ops`)
cannot run while a run holds it; as jobs they wait in the run queue for their turn and use
the run's own connection. Their schedules start stopped (switch them on in the UI).
"""

from dagster import (
    DefaultScheduleStatus,
    ScheduleDefinition,
    job,
)

from assets.maintenance import BackupConfig, RetentionConfig, backup_staging_op, retention_op
from pipelines.launchpad import ops_only
from pipelines.schedules import TIMEZONE


@job(
    description="Back up the staging database (docs/operations.md, Backups).",
    config=ops_only({"backup_staging_op": BackupConfig}),
)
def staging_backup_job() -> None:
    backup_staging_op()


@job(
    description="Delete what is past its retention age (docs/operations.md, Retention).",
    config=ops_only({"retention_op": RetentionConfig}),
)
def retention_job() -> None:
    retention_op()


ops_schedules = [
    ScheduleDefinition(
        name="staging_backup_nightly",
        job=staging_backup_job,
        cron_schedule="30 1 * * *",
        execution_timezone=TIMEZONE,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Backs up staging at 01:30, before the nightly ingestion.",
    ),
    ScheduleDefinition(
        name="retention_weekly",
        job=retention_job,
        cron_schedule="0 4 * * 0",
        execution_timezone=TIMEZONE,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Applies the retention ages on Sundays at 04:00.",
    ),
]
