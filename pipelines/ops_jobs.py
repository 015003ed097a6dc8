"""Backup and retention as Dagster jobs, in the staging-write pool.

With DuckDB staging only one process may open the file, so the commands of `pipelines.ops`
cannot run while a run holds it; as jobs they wait in the run queue for their turn and use
the run's own connection. Their schedules start stopped (switch them on in the UI).
"""

import os
from datetime import UTC, datetime
from pathlib import Path

from dagster import (
    Config,
    DefaultScheduleStatus,
    Failure,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from assets.pools import STAGING_WRITE
from pipelines.ops import apply_retention, backup_dagster_instance
from pipelines.schedules import TIMEZONE
from resources.erp import PostingPolicy
from resources.staging import StagingDatabase
from staging_models.backup import BackupError, backup_staging
from staging_models.db import data_dir


class BackupConfig(Config):
    dest: str = Field(
        default="", description="Backup folder; empty = $STAGEPOST_BACKUP_DIR or <data>/backups"
    )


@op(pool=STAGING_WRITE)
def backup_staging_op(
    context: OpExecutionContext, config: BackupConfig, staging: StagingDatabase
) -> str:
    """A consistent copy (DuckDB) or pg_dump (PostgreSQL) of staging, and a pg_dump of
    Dagster's instance database when DAGSTER_PG_DB is set (compose)."""
    dest = Path(config.dest or os.environ.get("STAGEPOST_BACKUP_DIR") or data_dir() / "backups")
    now = datetime.now(UTC)
    try:
        path = backup_staging(staging.get_db(), dest, now=now)
        dagster = backup_dagster_instance(dest, now)
    except BackupError as e:
        raise Failure(description=str(e)) from e
    meta = {"backup": str(path), "bytes": path.stat().st_size}
    if dagster is not None:
        meta["dagster_instance_backup"] = str(dagster)
    context.add_output_metadata(meta)
    return str(path)


class RetentionConfig(Config):
    dry_run: bool = Field(default=False, description="List what would go, delete nothing")


@op(pool=STAGING_WRITE)
def retention_op(
    context: OpExecutionContext,
    config: RetentionConfig,
    staging: StagingDatabase,
    posting_policy: PostingPolicy,
) -> None:
    """Workbooks, previews and landed raw rows past their configured ages (docs/operations.md)."""
    lines, ok = apply_retention(staging.get_db, posting_policy.previews(), dry_run=config.dry_run)
    for line in lines:
        context.log.info(line)
    context.add_output_metadata({"retention": "\n".join(lines)})
    if not ok:
        raise Failure(description="conservation fails after retention: " + lines[-1])


@job(description="Back up the staging database (docs/operations.md, Backups).")
def staging_backup_job() -> None:
    backup_staging_op()


@job(description="Delete what is past its retention age (docs/operations.md, Retention).")
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
