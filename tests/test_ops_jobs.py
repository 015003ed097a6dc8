"""Backup and retention as Dagster jobs: they run in the staging-write pool, on the run's own
connection, so they work on DuckDB staging while the code location is up."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.definitions import defs
from pipelines.ops_jobs import retention_job, staging_backup_job
from resources.erp import PostingPolicy
from resources.staging import StagingDatabase
from staging_models.db import StagingDB
from staging_models.validation import conservation
from tests.support.staging_helpers import World, entry


def _resources(db: StagingDB, tmp_path: Path) -> dict:
    return {
        "staging": StagingDatabase(url=db.url),
        "posting_policy": PostingPolicy(preview_dir=str(tmp_path / "previews")),
    }


def test_jobs_are_in_the_code_location_with_stopped_schedules() -> None:
    repo = defs.get_repository_def()
    assert {"staging_backup_job", "retention_job"} <= {j.name for j in repo.get_all_jobs()}
    for name in ("staging_backup_nightly", "retention_weekly"):
        assert repo.get_schedule_def(name).default_status.value == "STOPPED"
    for job_def in (staging_backup_job, retention_job):
        assert {n.definition.pool for n in job_def.graph.node_dict.values()} == {
            "stagepost_staging_write"
        }


def test_backup_job_on_duckdb(duck_db: StagingDB, tmp_path: Path) -> None:
    World(duck_db, tmp_path / "in").master()
    result = staging_backup_job.execute_in_process(
        run_config={"ops": {"backup_staging_op": {"config": {"dest": str(tmp_path / "b")}}}},
        resources=_resources(duck_db, tmp_path),
    )
    path = Path(result.output_for_node("backup_staging_op"))
    copy = duckdb.connect(str(path), read_only=True)
    try:
        assert copy.execute("SELECT COUNT(*) FROM stg_employees").fetchone()[0] == 2
    finally:
        copy.close()


def test_retention_job(any_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(any_db, tmp_path / "in").master()
    w.land("time_entries", [entry(entry_id="A")])
    w.validate()
    reports = tmp_path / "reports"
    reports.mkdir()
    old = reports / "reconciliation_old.xlsx"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    monkeypatch.setenv("STAGEPOST_REPORTS_DIR", str(reports))
    monkeypatch.setenv("STAGEPOST_RETENTION_REPORT_DAYS", "30")
    monkeypatch.setenv("STAGEPOST_RETENTION_LANDING_DAYS", "0.00001")  # about a second
    monkeypatch.delenv("STAGEPOST_RETENTION_PREVIEW_DAYS", raising=False)
    monkeypatch.delenv("STAGEPOST_FULL_EXPORT_PATTERN", raising=False)
    time.sleep(1.5)
    result = retention_job.execute_in_process(resources=_resources(any_db, tmp_path))
    assert result.success
    out = next(e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT")
    report = out.event_specific_data.metadata["retention"].value
    assert "time_entries: deleted 1 rows of 1 loads" in report and "conservation: ok" in report
    assert not old.exists()
    assert any_db.scalar("SELECT COUNT(*) FROM land_time_entries") == 0
    assert any_db.scalar("SELECT SUM(rows_purged) FROM landing_purges") > 0
    assert conservation(any_db)["ok"].all()
