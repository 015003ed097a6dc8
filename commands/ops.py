"""Operations commands: health check, backup, retention (docs/operations.md).

    python -m commands.ops health       (console script: stagepost-health)
    python -m commands.ops backup DIR   (stagepost-backup)
    python -m commands.ops retention [--dry-run]   (stagepost-retention)

They read the same environment variables as the code location. With DuckDB staging, run
backup and retention while no run holds the staging file (DuckDB allows one writer
process); with PostgreSQL staging they run beside Dagster.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from assets.maintenance import apply_retention, backup_dagster_instance
from commands.health import _open_staging, run_checks
from config.settings import current
from staging_models.backup import BackupError, backup_staging
from staging_models.db import StagingDB


def health_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stagepost-health", description=__doc__)
    ap.add_argument("--min-free-mb", type=float, default=None)
    args = ap.parse_args(argv)
    checks = run_checks(args.min_free_mb)
    for c in checks:
        print(c.line())
    return 0 if all(c.ok for c in checks) else 1


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
        secret = current().staging_password
        password = secret.get_secret_value() if secret else None
        staging = backup_staging(db, args.dest, password=password, now=now)
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


def retention_main(argv: list[str] | None = None) -> int:
    from resources.erp import PostingPolicy

    ap = argparse.ArgumentParser(
        prog="stagepost-retention",
        description="Delete workbooks, previews and landed raw rows past the configured ages.",
    )
    ap.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    args = ap.parse_args(argv)
    previews = PostingPolicy(preview_dir=current().preview_dir).previews()
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
        print(f"usage: python -m commands.ops {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
