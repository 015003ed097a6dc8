"""Backups: a DuckDB copy after CHECKPOINT that opens and holds the rows; pg_dump + restore."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from staging_models.backup import BackupError, backup_staging
from staging_models.db import StagingDB
from tests.conftest import PG_URL
from tests.support.staging_helpers import World, entry


def _world(db: StagingDB, folder: Path) -> int:
    w = World(db, folder).master()
    w.land("time_entries", [entry(entry_id=f"T{i}", hours="1.25") for i in range(5)])
    w.validate()
    return db.scalar("SELECT COUNT(*) FROM stg_time_entries")


def test_duckdb_backup_is_a_consistent_copy(duck_db: StagingDB, tmp_path: Path) -> None:
    n = _world(duck_db, tmp_path / "in")
    # Uncheckpointed work sits in the WAL: the copy must still hold it.
    with duck_db.begin() as conn:
        conn.exec_driver_sql("UPDATE stg_time_entries SET hours = 2.50 WHERE row_key = 'T0'")
    dest = backup_staging(duck_db, tmp_path / "backups")
    assert dest.name.startswith("staging-") and dest.suffix == ".duckdb"
    assert not list((tmp_path / "backups").glob(".*.part"))
    copy = duckdb.connect(str(dest), read_only=True)
    try:
        assert copy.execute("SELECT COUNT(*) FROM stg_time_entries").fetchone()[0] == n
        hours = copy.execute("SELECT hours FROM stg_time_entries WHERE row_key = 'T0'").fetchone()
        assert str(hours[0]) == "2.5000"
        assert copy.execute("SELECT value FROM schema_meta").fetchone()[0] is not None
    finally:
        copy.close()


def test_duckdb_backup_without_a_file_fails(tmp_path: Path) -> None:
    db = StagingDB(f"duckdb:///{tmp_path / 'nothing' / 'staging.duckdb'}")
    with pytest.raises(BackupError, match="no DuckDB staging file"):
        backup_staging(db, tmp_path / "backups")


def test_pg_dump_restores_into_a_fresh_database(pg_db: StagingDB, tmp_path: Path) -> None:
    n = _world(pg_db, tmp_path / "in")
    dest = backup_staging(pg_db, tmp_path / "backups")
    assert dest.suffix == ".dump" and dest.stat().st_size > 0
    schema = pg_db.scalar("SELECT current_schema()")
    target = f"sp_restore_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    base = PG_URL.rsplit("/", 1)[0]
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {target}")
    try:
        done = subprocess.run(
            ["pg_restore", "--no-owner", "-d", f"{base}/{target}", str(dest)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        restored = sa.create_engine(
            f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{target}"
        )
        with restored.connect() as c:
            got = c.exec_driver_sql(f"SELECT COUNT(*) FROM {schema}.stg_time_entries").scalar()
            hours = c.exec_driver_sql(f"SELECT SUM(hours) FROM {schema}.stg_time_entries").scalar()
            tables = c.exec_driver_sql(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'"
                " AND table_name = 'stg_time_entries'"
            ).scalar()
        restored.dispose()
        assert got == n and str(hours) == "6.2500"
        assert tables == 0  # only the staging schema was dumped
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
        admin.dispose()


def test_pg_dump_failure_names_the_database(tmp_path: Path) -> None:
    db = StagingDB("postgresql://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(BackupError, match="pg_dump of postgresql://postgres@127.0.0.1:1/nowhere"):
        backup_staging(db, tmp_path)
    assert not list(tmp_path.glob("*.dump"))


def test_duckdb_backup_of_a_file_in_use_says_so(duck_db: StagingDB, tmp_path: Path) -> None:
    path = duck_db.engine.url.database
    duck_db.engine.dispose()
    code = f"import duckdb, time; c = duckdb.connect({path!r}); print('ready', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(BackupError, match=f"PID {holder.pid}.*run the backup between runs"):
            backup_staging(duck_db, tmp_path / "backups")
    finally:
        holder.kill()
        holder.wait()
    assert not any((tmp_path / "backups").iterdir())  # nothing half-written


def test_dagster_instance_dump(pg_available: bool, tmp_path: Path, monkeypatch) -> None:
    """With DAGSTER_PG_* set (compose), Dagster's own database is dumped beside staging."""
    from datetime import UTC, datetime

    from assets.maintenance import backup_dagster_instance

    if not pg_available:
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable on this machine")
    monkeypatch.delenv("DAGSTER_PG_DB", raising=False)
    assert backup_dagster_instance(tmp_path, datetime.now(UTC)) is None  # embedded instance
    name = f"sp_dagster_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    base = PG_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    db = sa.create_engine(f"{base}/{name}")
    with db.begin() as c:
        c.exec_driver_sql("CREATE TABLE runs (run_id text primary key)")
        c.exec_driver_sql("INSERT INTO runs VALUES ('r1')")
    db.dispose()
    try:
        for k, v in dict(HOST="127.0.0.1", PORT="5432", DB=name, USER="postgres").items():
            monkeypatch.setenv(f"DAGSTER_PG_{k}", v)
        path = backup_dagster_instance(tmp_path, datetime(2026, 12, 5, 1, 30, tzinfo=UTC))
        assert path == tmp_path / "dagster-20261205T013000Z.dump"
        listing = subprocess.run(
            ["pg_restore", "--list", str(path)], capture_output=True, text=True
        )
        assert listing.returncode == 0 and "TABLE DATA public runs" in listing.stdout
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
