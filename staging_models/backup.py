"""Consistent backups of the staging database (and of Dagster's instance on PostgreSQL).

DuckDB: `CHECKPOINT` folds the write-ahead log into the file, then the file is copied while
this process holds it (DuckDB lets one process open a file read-write, so no run can write
during the copy); the copy is opened read-only and checked before it counts.
PostgreSQL: `pg_dump` in its custom format (restore with `pg_restore`), of the staging
schema when the URL pins one with `options=-csearch_path=...`, else of the whole database.
The password goes to pg_dump through `PGPASSWORD`, never on its command line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from staging_models.db import StagingDB, redact_url


class BackupError(RuntimeError):
    """A backup could not be made or did not check out; the message says which and why."""


def _stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def backup_duckdb(db: StagingDB, dest_dir: Path, *, now: datetime | None = None) -> Path:
    """Checkpoint the staging file and copy it to `dest_dir/staging-<UTC stamp>.duckdb`."""
    src = Path(make_url(db.url).database or "")
    if not src.is_file():
        raise BackupError(f"no DuckDB staging file at {src}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"staging-{_stamp(now)}.duckdb"
    part = dest.with_name(f".{dest.name}.part")
    try:
        conn = db.engine.connect()
    except sa.exc.DBAPIError as e:
        raise BackupError(
            f"cannot open {src}: {str(e.orig).split(' See also')[0]} "
            "(DuckDB lets one process in: run the backup between runs, or as staging_backup_job)"
        ) from e
    with conn:  # held during the copy: no other process can write
        conn.exec_driver_sql("CHECKPOINT")
        wal = src.with_name(src.name + ".wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise BackupError(f"{wal} is not empty after CHECKPOINT: a transaction is open")
        shutil.copyfile(src, part)
    try:
        check = duckdb.connect(str(part), read_only=True)
        try:
            check.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchone()
        finally:
            check.close()
    except duckdb.Error as e:
        part.unlink(missing_ok=True)
        raise BackupError(f"the copy of {src} does not open: {e}") from e
    os.replace(part, dest)
    return dest


def _search_path_schema(url: URL) -> str | None:
    """The schema named by `options=-csearch_path=X` in a PostgreSQL URL, if any."""
    options = url.query.get("options")
    text = " ".join(options) if isinstance(options, tuple) else (options or "")
    m = re.search(r"search_path\s*=\s*([A-Za-z_][A-Za-z0-9_]*)", text)
    return m.group(1) if m else None


def pg_dump(url: str, dest: Path, *, password: str | None = None, schema: str | None = None):
    """`pg_dump --format=custom` of the database at `url` (one schema if given) into `dest`."""
    u = make_url(url)
    password = password or u.password
    libpq = u.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    cmd = ["pg_dump", "--format=custom", "--no-owner", "--file", str(dest)]
    if schema:
        cmd += ["--schema", schema]
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(cmd + [libpq], env=env, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise BackupError("pg_dump is not installed (postgresql-client)") from e
    if done.returncode != 0:
        dest.unlink(missing_ok=True)
        raise BackupError(f"pg_dump of {redact_url(url)} failed: {done.stderr.strip()}")
    return dest


def backup_postgres(
    db: StagingDB, dest_dir: Path, *, password: str | None = None, now: datetime | None = None
) -> Path:
    """pg_dump of the staging schema (or database) to `dest_dir/staging-<UTC stamp>.dump`."""
    schema = _search_path_schema(make_url(db.url))
    dest = dest_dir / f"staging-{_stamp(now)}.dump"
    return pg_dump(db.url, dest, password=password, schema=schema)


def backup_staging(
    db: StagingDB, dest_dir: Path, *, password: str | None = None, now: datetime | None = None
) -> Path:
    """A consistent backup of the staging database, whichever the backend."""
    if db.is_duckdb:
        return backup_duckdb(db, dest_dir, now=now)
    return backup_postgres(db, dest_dir, password=password, now=now)
