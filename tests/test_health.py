"""Health check: every check passes on a sound setup, and each fails on a real fault."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from commands.ops import health_main
from staging_models.db import StagingDB

ROOT = Path(__file__).resolve().parents[1]
DEAD_PG = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1


def _sound(any_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StagingDB:
    """A sound deployment: staging (DuckDB or PostgreSQL), a local ERP and inbox, no Dagster."""
    data = tmp_path / "data"
    (data / "inbox").mkdir(parents=True)
    for name in list(os.environ):
        if name.startswith(("STAGEPOST_", "DAGSTER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(data))
    monkeypatch.setenv("STAGEPOST_STAGING_URL", any_db.url)
    monkeypatch.setenv("STAGEPOST_ERP_URL", f"duckdb:///{tmp_path / 'erp.duckdb'}")
    monkeypatch.setenv("STAGEPOST_HEALTH_MIN_FREE_MB", "1")
    any_db.engine.dispose()  # DuckDB: let the check open the file
    return any_db


@pytest.fixture
def env(any_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StagingDB:
    return _sound(any_db, tmp_path, monkeypatch)


@pytest.fixture
def duck_env(duck_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StagingDB:
    """For checks that do not depend on the staging backend."""
    return _sound(duck_db, tmp_path, monkeypatch)


def _lines(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    out = capsys.readouterr().out.strip().splitlines()
    return {line[5:].split(":", 1)[0]: line for line in out}


def test_all_checks_pass(env: StagingDB, capsys) -> None:
    assert health_main([]) == 0
    lines = _lines(capsys)
    assert set(lines) == {"staging", "posting lock", "ERP", "inbox", "disk"}
    assert all(line.startswith("OK") for line in lines.values()), lines


def test_unreachable_erp_fails(env: StagingDB, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STAGEPOST_ERP_URL", DEAD_PG)
    assert health_main([]) == 1
    lines = _lines(capsys)
    assert (
        lines["ERP"].startswith("FAIL ERP: ErpUnavailable") and "Connection refused" in lines["ERP"]
    )
    assert lines["staging"].startswith("OK")


def test_wrong_schema_version_fails(env: StagingDB, capsys) -> None:
    with env.begin() as conn:
        conn.exec_driver_sql("UPDATE schema_meta SET value = '99' WHERE key = 'schema_version'")
    env.engine.dispose()
    assert health_main([]) == 1
    assert "has schema version 99" in _lines(capsys)["staging"]


def test_stale_posting_lock_fails(env: StagingDB, capsys) -> None:
    beat = datetime.now(UTC) - timedelta(hours=1)
    with env.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO posting_lock (lock_name, holder, window_id, acquired_at, heartbeat_at)"
                " VALUES ('posting', 'otherhost:1:w1', 'w1', :t, :t)"
            ),
            {"t": beat},
        )
    env.engine.dispose()
    assert health_main([]) == 1
    assert "window w1" in _lines(capsys)["posting lock"]


def test_missing_inbox_and_full_disk_fail(duck_env: StagingDB, tmp_path, capsys) -> None:
    shutil.rmtree(tmp_path / "data" / "inbox")
    assert health_main(["--min-free-mb", str(10**12)]) == 1
    lines = _lines(capsys)
    assert lines["inbox"].startswith("FAIL") and "does not exist" in lines["inbox"]
    assert lines["disk"].startswith("FAIL")
    assert not (tmp_path / "data" / "inbox").exists()  # the check creates nothing


def test_dagster_instance(duck_env: StagingDB, tmp_path, monkeypatch, capsys) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert health_main([]) == 0
    assert "0 runs stored" in _lines(capsys)["dagster instance"]

    pg_home = tmp_path / "pg_home"
    pg_home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", pg_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(pg_home))
    for k, v in dict(HOST="127.0.0.1", PORT="1", DB="nowhere", USER="postgres").items():
        monkeypatch.setenv(f"DAGSTER_PG_{k}", v)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "")
    assert health_main([]) == 1
    assert _lines(capsys)["dagster instance"].startswith("FAIL")


def test_command_line_exit_status(duck_env: StagingDB, monkeypatch) -> None:
    monkeypatch.setenv("STAGEPOST_ERP_URL", DEAD_PG)
    done = subprocess.run(
        [sys.executable, "-m", "commands.ops", "health"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "FAIL ERP" in done.stdout and "OK   staging" in done.stdout


def _hold(path: Path) -> subprocess.Popen:
    """Another process holding the DuckDB file, as a running Dagster run does."""
    code = f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_duckdb_staging_missing_or_in_use(
    duck_env: StagingDB, tmp_path, monkeypatch, capsys
) -> None:
    path = Path(duck_env.engine.url.database)
    holder = _hold(path)
    try:
        assert health_main([]) == 0  # a run holds the file: normal, reported, not a failure
        line = _lines(capsys)["staging"]
        assert line.startswith("OK") and f"PID {holder.pid}" in line and "not checked" in line
    finally:
        holder.kill()
        holder.wait()
    missing = tmp_path / "gone" / "staging.duckdb"
    monkeypatch.setenv("STAGEPOST_STAGING_URL", f"duckdb:///{missing}")
    assert health_main([]) == 1
    assert "no DuckDB staging file" in _lines(capsys)["staging"]
    assert not missing.parent.exists()  # the probe created nothing
