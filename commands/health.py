"""Health checks for a deployment: one line per check, exit status non-zero if any fails.

Each check reads, never writes (the ERP check only asks whether an ID exists; a local inbox
is not created if missing), so it is safe to run from a probe or cron at any time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from config.settings import current
from posting.lock import DEFAULT_STALE_AFTER
from resources import settings
from staging_models.db import (
    StagingDB,
    data_dir,
    default_staging_url,
    redact_url,
    url_with_password,
)
from staging_models.schema import SCHEMA_VERSION


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _staging_url() -> str:
    """The staging URL as stagepost runs it, with its password (kept out of the URL setting)."""
    s = current()
    password = s.staging_password.get_secret_value() if s.staging_password else None
    return url_with_password(s.staging_url or default_staging_url(), password)


def _open_staging() -> StagingDB:
    return StagingDB(_staging_url())


@dataclass
class _Probe:
    """What the staging checks need: a read-only engine (DuckDB opened read-only, so a probe
    never creates or changes the file)."""

    url: str
    engine: sa.Engine
    is_duckdb: bool


def _probe_staging() -> _Probe:
    url = _staging_url()
    u = sa.engine.make_url(url)
    if u.get_backend_name() == "duckdb":
        path = Path(u.database or "")
        if not path.is_file():
            raise FileNotFoundError(f"no DuckDB staging file at {path}")
        return _Probe(url, sa.create_engine(u, connect_args={"read_only": True}), True)
    db = StagingDB(url)  # PostgreSQL: nothing is created before init_schema
    return _Probe(url, db.engine, False)


def _duckdb_busy(e: Exception) -> bool:
    return "Conflicting lock is held" in str(e)


def check_staging(db: StagingDB | _Probe) -> Check:
    """Reachable, and created by this schema version (without creating anything)."""
    with db.engine.connect() as conn:
        if db.is_duckdb:  # duckdb-engine cannot reflect on SQLAlchemy 2.1
            names = {r[0] for r in conn.exec_driver_sql("SHOW TABLES").fetchall()}
        else:
            names = set(sa.inspect(conn).get_table_names())
        if "schema_meta" not in names:
            return Check("staging", False, f"{redact_url(db.url)} has no stagepost tables yet")
        found = conn.execute(
            sa.text("SELECT value FROM schema_meta WHERE key = 'schema_version'")
        ).scalar()
    if found is None or int(found) != SCHEMA_VERSION:
        return Check(
            "staging",
            False,
            f"{redact_url(db.url)} has schema version {found}, this stagepost expects "
            f"{SCHEMA_VERSION}: upgrade before running (docs/operations.md, Upgrades)",
        )
    return Check("staging", True, f"{redact_url(db.url)}, schema version {found}")


def check_posting_lock(db: StagingDB | _Probe, now: datetime | None = None) -> Check:
    """A held lock whose heartbeat is older than the stale limit means a window died."""
    now = now or datetime.now(UTC)
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT lock_name, window_id, heartbeat_at FROM posting_lock "
                "WHERE holder IS NOT NULL"
            )
        ).fetchall()
    for name, window_id, beat in rows:
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        if beat is None or now - beat > DEFAULT_STALE_AFTER:
            return Check(
                "posting lock",
                False,
                f"lock {name!r} held by window {window_id} with its last heartbeat at {beat}: "
                "that window died; the next window takes the lock over (see the runbook)",
            )
    held = f"held by window {rows[0][1]}" if rows else "free"
    return Check("posting lock", True, held)


def check_erp() -> Check:
    erp = settings.erp_resource().process_config_and_initialize()
    target = erp.get_target()
    target.existing_external_ids(["stagepost-health-probe"])
    return Check("ERP", True, f"{erp.describe()} answers")


def check_inbox() -> Check:
    src = settings.psa_source_resource().process_config_and_initialize()
    if src.kind == "local":
        inbox = Path(src.inbox) if src.inbox else data_dir() / "inbox"
        if not inbox.is_dir():
            return Check("inbox", False, f"{inbox} does not exist")
        n = sum(1 for _ in inbox.iterdir())
        return Check("inbox", True, f"{inbox} ({n} entries)")
    with src.open() as source:
        files = source.list_complete()
        return Check("inbox", True, f"{source.describe()} ({len(files)} complete files)")


def check_disk(min_free_mb: float | None = None) -> Check:
    folder = data_dir()
    min_free = current().health_min_free_mb if min_free_mb is None else min_free_mb
    probe = folder if folder.exists() else folder.parent
    free_mb = shutil.disk_usage(probe).free / 2**20
    ok = free_mb >= min_free
    return Check("disk", ok, f"{free_mb:,.0f} MB free in {folder} (minimum {min_free:,.0f} MB)")


def check_dagster() -> Check | None:
    """Dagster's instance storage answers (only when DAGSTER_HOME, Dagster's own variable, is
    set)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return None
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        n = instance.get_runs_count()
        return Check("dagster instance", True, f"{home}: {n} runs stored")


def _failure(name: str, e: Exception) -> Check:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return Check(name, False, f"{type(e).__name__}: {msg}")


def _guard(name: str, fn: Callable[[], Check | None]) -> Check | None:
    try:
        return fn()
    except Exception as e:  # a probe reports any failure as a failed line, never a traceback
        return _failure(name, e)


def run_checks(min_free_mb: float | None = None) -> list[Check]:
    checks: list[Check | None] = []
    probe: _Probe | None = None
    try:
        probe = _probe_staging()
        staging = check_staging(probe)
        checks.append(staging)
        if staging.ok:
            checks.append(_guard("posting lock", lambda: check_posting_lock(probe)))
    except Exception as e:
        if _duckdb_busy(e):
            # A run holds the file (DuckDB lets one process in): normal while runs work.
            holder = str(e).split("Conflicting lock is held in", 1)[1].split(". See")[0]
            checks.append(Check("staging", True, f"DuckDB file in use by{holder}: not checked"))
        else:
            checks.append(_failure("staging", e))
    finally:
        if probe is not None:
            probe.engine.dispose()  # DuckDB: release the file at once
    checks.append(_guard("ERP", check_erp))
    checks.append(_guard("inbox", check_inbox))
    checks.append(_guard("disk", lambda: check_disk(min_free_mb)))
    checks.append(_guard("dagster instance", check_dagster))
    return [c for c in checks if c is not None]
