"""Backup and retention: the functions the operations commands (`commands/ops.py`) and the
Dagster ops of `pipelines/ops_jobs.py` share, and those ops (in the staging-write pool).

With DuckDB staging only one process may open the file: as ops they run in the run queue's
turn and use the run's own connection (docs/operations.md).
"""

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from dagster import Config, Failure, OpExecutionContext, op
from pydantic import Field

from assets.pools import STAGING_WRITE
from config.settings import current, env_name
from resources.erp import PostingPolicy
from resources.staging import StagingDatabase
from staging_models.api_pull import api_pulls_dir
from staging_models.backup import BackupError, backup_staging, pg_dump
from staging_models.db import StagingDB, data_dir
from staging_models.retention import purge_files, purge_landing


def backup_dagster_instance(dest_dir: Path, now: datetime) -> Path | None:
    """pg_dump of Dagster's instance database when it is on PostgreSQL (DAGSTER_PG_*)."""
    e = os.environ
    if not e.get("DAGSTER_PG_DB"):
        return None
    user = e.get("DAGSTER_PG_USER", "postgres")
    url = (
        f"postgresql://{user}@{e.get('DAGSTER_PG_HOST', 'localhost')}:"
        f"{e.get('DAGSTER_PG_PORT', '5432')}/{e['DAGSTER_PG_DB']}"
    )
    dest = dest_dir / f"dagster-{now:%Y%m%dT%H%M%SZ}.dump"
    return pg_dump(url, dest, password=e.get("DAGSTER_PG_PASSWORD") or None)


def _days(field: str) -> float | None:
    """A retention age in days (a `retention_*_days` setting); unset, empty or 0 keeps
    forever."""
    days = getattr(current(), field)
    return days if days else None


def _latest_full_export_start(db: StagingDB) -> datetime | None:
    from reconciliation.compare import find_full_export

    full = find_full_export(db, current().full_export_pattern or None)
    return None if full is None else full.started_at


def apply_retention(
    open_db: Callable[[], StagingDB], previews: Path, *, dry_run: bool = False
) -> tuple[list[str], bool]:
    """Apply the configured retention; returns report lines and whether conservation holds.
    `open_db` is only called when landed rows are to be purged."""
    from reconciliation.report_files import reports_dir
    from staging_models.validation import conservation

    verb = "would delete" if dry_run else "deleted"
    lines: list[str] = []
    for label, field, folder in (
        ("workbooks", "retention_report_days", reports_dir()),
        ("previews", "retention_preview_days", previews),
    ):
        days = _days(field)
        if days is None:
            lines.append(f"{label}: kept ({env_name(field)} not set)")
            continue
        gone = purge_files(folder, days, dry_run=dry_run)
        lines.append(f"{label}: {verb} {len(gone)} files older than {days:g} days in {folder}")
    days = _days("retention_api_pull_days")
    vendors = sorted(p for p in api_pulls_dir().glob("*") if p.is_dir())
    if days is None:
        lines.append(f"API pulls: kept ({env_name('retention_api_pull_days')} not set)")
    for folder in vendors if days is not None else ():
        gone = purge_files(folder, days, "*.parquet", dry_run=dry_run)
        lines.append(f"API pulls: {verb} {len(gone)} files older than {days:g} days in {folder}")
    days = _days("retention_landing_days")
    if days is None:
        lines.append(f"landed raw rows: kept ({env_name('retention_landing_days')} not set)")
        return lines, True
    db = open_db()
    result = purge_landing(
        db, days, keep_time_entries_from=_latest_full_export_start(db), dry_run=dry_run
    )
    for name, n in result.loads.items():
        if n:
            lines.append(f"landed raw rows: {name}: {verb} {result.rows[name]} rows of {n} loads")
    if not any(result.loads.values()):
        lines.append(f"landed raw rows: no settled load older than {days:g} days")
    cons = conservation(db)
    bad = cons.loc[~cons["ok"], "dataset"].tolist()
    lines.append(f"conservation: {'ok' if not bad else 'FAILS for ' + ', '.join(bad)}")
    return lines, not bad


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
    dest = Path(config.dest or current().backup_dir or data_dir() / "backups")
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
