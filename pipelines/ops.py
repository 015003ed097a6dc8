"""Operations commands: health check, backup, retention (docs/operations.md).

    python -m pipelines.ops health       (console script: stagepost-health)
    python -m pipelines.ops backup DIR   (stagepost-backup)
    python -m pipelines.ops retention [--dry-run]   (stagepost-retention)

They read the same environment variables as the code location. With DuckDB staging, run
backup and retention while no run holds the staging file (DuckDB allows one writer
process); with PostgreSQL staging they run beside Dagster.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pipelines.health import _open_staging, run_checks
from staging_models.backup import BackupError, backup_staging, pg_dump
from staging_models.db import StagingDB
from staging_models.retention import purge_files, purge_landing


def health_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stagepost-health", description=__doc__)
    ap.add_argument("--min-free-mb", type=float, default=None)
    args = ap.parse_args(argv)
    checks = run_checks(args.min_free_mb)
    for c in checks:
        print(c.line())
    return 0 if all(c.ok for c in checks) else 1


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


def backup_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="stagepost-backup",
        description="Back up staging (and "
        "Dagster's PostgreSQL instance when DAGSTER_PG_DB is set).",
    )
    ap.add_argument("dest", type=Path, help="folder the backup files are written to")
    args = ap.parse_args(argv)
    now = datetime.now(UTC)
    db = _open_staging()
    try:
        staging = backup_staging(
            db, args.dest, password=os.environ.get("STAGEPOST_STAGING_PASSWORD"), now=now
        )
        print(f"staging: {staging}")
        dagster = backup_dagster_instance(args.dest, now)
        if dagster is not None:
            print(f"dagster instance: {dagster}")
    except BackupError as e:
        print(f"backup failed: {e}", file=sys.stderr)
        return 1
    finally:
        db.engine.dispose()
    return 0


def _days(name: str) -> float | None:
    """A retention age in days from the environment; unset, empty or 0 keeps forever."""
    value = os.environ.get(name, "").strip()
    return float(value) if value and float(value) > 0 else None


def _latest_full_export_start(db: StagingDB) -> datetime | None:
    from reconciliation.compare import find_full_export

    full = find_full_export(db, os.environ.get("STAGEPOST_FULL_EXPORT_PATTERN"))
    return None if full is None else full.started_at


def apply_retention(
    open_db: Callable[[], StagingDB], previews: Path, *, dry_run: bool = False
) -> tuple[list[str], bool]:
    """Apply the configured retention; returns report lines and whether conservation holds.
    `open_db` is only called when landed rows are to be purged."""
    from reconciliation.report_server import reports_dir
    from staging_models.validation import conservation

    verb = "would delete" if dry_run else "deleted"
    lines: list[str] = []
    for label, env, folder in (
        ("workbooks", "STAGEPOST_RETENTION_REPORT_DAYS", reports_dir()),
        ("previews", "STAGEPOST_RETENTION_PREVIEW_DAYS", previews),
    ):
        days = _days(env)
        if days is None:
            lines.append(f"{label}: kept ({env} not set)")
            continue
        gone = purge_files(folder, days, dry_run=dry_run)
        lines.append(f"{label}: {verb} {len(gone)} files older than {days:g} days in {folder}")
    days = _days("STAGEPOST_RETENTION_LANDING_DAYS")
    if days is None:
        lines.append("landed raw rows: kept (STAGEPOST_RETENTION_LANDING_DAYS not set)")
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


def retention_main(argv: list[str] | None = None) -> int:
    from resources.erp import PostingPolicy

    ap = argparse.ArgumentParser(
        prog="stagepost-retention",
        description="Delete workbooks, previews and landed raw rows past the configured ages.",
    )
    ap.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    args = ap.parse_args(argv)
    previews = PostingPolicy(preview_dir=os.environ.get("STAGEPOST_PREVIEW_DIR", "")).previews()
    opened: list[StagingDB] = []

    def open_db() -> StagingDB:
        db = _open_staging()
        opened.append(db)
        db.init_schema()
        return db

    try:
        lines, ok = apply_retention(open_db, previews, dry_run=args.dry_run)
    except Exception as e:  # e.g. the DuckDB file held by a run: say so in one line
        print(f"retention failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        for db in opened:
            db.engine.dispose()
    print("\n".join(lines))
    return 0 if ok else 1


COMMANDS = {"health": health_main, "backup": backup_main, "retention": retention_main}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m pipelines.ops {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
