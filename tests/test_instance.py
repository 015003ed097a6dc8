"""The production Dagster instance (deploy/dagster.postgres.yaml) on the local PostgreSQL, with
its daemon, as a firm runs it beside PostgreSQL staging: runs, events and schedules stored in
PostgreSQL; runs of one pool one at a time, runs of different pools side by side; a run whose
process is killed is failed and frees its pool for the next run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from assets.pools import ERP_POSTING, RECONCILIATION, STAGING_WRITE
from pipelines.jobs import ingest_nightly_job, ingest_time_entries_job
from pipelines.reconciliation_jobs import reconciliation_job
from staging_models.db import StagingDB
from tests.conftest import PG_URL
from tests.support.csvtools import te, write_csv
from tests.support.dagster_ui import dagster_ui, gql, run_worker_pid

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = PG_URL.replace("postgresql://", "postgresql+psycopg://")


@pytest.fixture
def instance_db(pg_available: bool):
    """A throwaway PostgreSQL database for Dagster's run, event and schedule storage."""
    if not pg_available:
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable on this machine")
    name = f"sp_dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def _daemon_lines(log: Path) -> list[str]:
    """What the run queue said (kept in the failure message: tmp folders do not last)."""
    return [
        line[-300:]
        for line in log.read_text().splitlines()
        if "QueuedRunCoordinatorDaemon" in line or "blocked" in line
    ][-40:]


_STARTING = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection {
    events { __typename ... on MessageEvent { timestamp } } } } }"""


def _dequeued_at(ui, run_id: str) -> float:
    """When the run queue released the run (its RunStartingEvent), in epoch seconds."""
    events = gql(ui.port, _STARTING, {"id": run_id})["logsForRun"]["events"]
    (ms,) = [e["timestamp"] for e in events if e["__typename"] == "RunStartingEvent"]
    return int(ms) / 1000


def _interval(run: dict) -> tuple[float, float]:
    return float(run["startTime"]), float(run["endTime"])


def _overlap(a: dict, b: dict) -> bool:
    (a0, a1), (b0, b1) = _interval(a), _interval(b)
    return a0 < b1 and b0 < a1


@pytest.mark.slow
def test_production_instance_on_postgresql_with_pools(
    tmp_path: Path, pg_db: StagingDB, instance_db: str
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((ROOT / "deploy" / "dagster.postgres.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 2  # the test cannot wait 2 minutes
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    data = tmp_path / "data"
    # A file is landed once it has been quiet for STAGEPOST_STABLE_SECONDS: an ingestion run
    # that finds a fresh one waits that long, so it is still running when the next runs start.
    inbox = data / "inbox"
    pg = sa.engine.make_url(PG_URL)
    env = {
        "DAGSTER_PG_HOST": pg.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(pg.port or 5432),
        "DAGSTER_PG_DB": instance_db,
        "DAGSTER_PG_USER": pg.username or "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "STAGEPOST_DATA_DIR": str(data),
        "STAGEPOST_STAGING_URL": str(pg_db.engine.url.render_as_string(hide_password=False)),
        "STAGEPOST_ERP_URL": f"duckdb:///{tmp_path / 'erp.duckdb'}",
        "STAGEPOST_STABLE_SECONDS": "25",
    }
    # Pool limits set up front, as docs/deployment.md says: Dagster gives a pool its default
    # limit when the queue first sees it, and enforces it only from the next pass on.
    for pool in (STAGING_WRITE, ERP_POSTING, RECONCILIATION):
        subprocess.run(
            [
                str(Path(sys.executable).parent / "dagster"),
                "instance",
                "concurrency",
                "set",
                pool,
                "1",
            ],
            env={**os.environ, **env, "DAGSTER_HOME": str(home)},
            check=True,
            capture_output=True,
        )
    with dagster_ui(home, env, tmp_path / "dg_dev.log") as ui:
        # Two runs of the staging-write pool and one reconciliation, launched together.
        write_csv(inbox / "time_entries_a.csv", "time_entries", [te(), te(entry_id="TE2")])
        first = ui.launch(ingest_time_entries_job.name)
        recon = ui.launch(reconciliation_job.name)
        second = ui.launch(ingest_nightly_job.name)
        runs = ui.wait([first, second, recon])
        assert {r["status"] for r in runs.values()} == {"SUCCESS"}, runs
        assert not _overlap(runs[first], runs[second]), "one staging writer at a time"
        assert _overlap(runs[recon], runs[first]) or _overlap(runs[recon], runs[second]), (
            "a reconciliation runs beside an ingestion on PostgreSQL staging",
            runs,
            _daemon_lines(ui.log),
        )

        # A run killed half-way is failed by Dagster and frees the pool for the run behind it.
        write_csv(inbox / "time_entries_b.csv", "time_entries", [te(entry_id="TE3")])
        doomed = ui.launch(ingest_time_entries_job.name)
        behind = ui.launch(ingest_nightly_job.name)
        deadline = time.monotonic() + 120
        pid = None
        while pid is None:
            assert time.monotonic() < deadline, ui.run(doomed)
            pid = run_worker_pid(ui, doomed)
            time.sleep(0.2)
        killed_at = datetime.now().timestamp()
        os.kill(pid, signal.SIGKILL)
        runs = ui.wait([doomed, behind])
        assert runs[doomed]["status"] == "FAILURE", runs
        assert runs[behind]["status"] == "SUCCESS", runs
        assert float(runs[behind]["startTime"]) >= killed_at - 1

    # Runs and their events live in the instance's PostgreSQL database, not in DAGSTER_HOME.
    engine = sa.create_engine(ADMIN_URL.rsplit("/", 1)[0] + "/" + instance_db)
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT COUNT(*) FROM runs").scalar() == 5
        pools = c.exec_driver_sql('SELECT concurrency_key, "limit" FROM concurrency_limits')
        assert dict(pools.all()) == {STAGING_WRITE: 1, ERP_POSTING: 1, RECONCILIATION: 1}
        assert c.exec_driver_sql("SELECT COUNT(*) FROM event_logs").scalar() > 20
    engine.dispose()
    assert not (home / "history").exists(), "no SQLite run storage beside the PostgreSQL one"
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_posting_windows_run_one_per_legal_entity_entities_in_parallel(
    tmp_path: Path, pg_db: StagingDB, instance_db: str, pg_available: bool
) -> None:
    """The production instance's run queue: posting runs tagged with the same legal entity run
    one after the other, runs of different entities side by side (the posting pool raised to 2,
    as docs/deployment.md says); every line reaches the ERP once."""
    from assets.posting import ENTITY_TAG, POSTING_ASSET
    from connectors.erp.sql_interface import SqlInterfaceTarget
    from pipelines.posting_jobs import posting_window_job
    from tests.support.posting_helpers import erp_lines, pg_schema, stage_entries, with_master_data

    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((ROOT / "deploy" / "dagster.postgres.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 2
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    us = {"legal_entity": "US01", "project_code": "UP1", "currency": "USD"}
    stage_entries(
        pg_db,
        [{"entry_id": f"DE{i}"} for i in range(20)]
        + [{"entry_id": f"US{i}", **us} for i in range(20)],
    )
    pg = sa.engine.make_url(PG_URL)
    with pg_schema(pg_available) as erp_url:
        target = SqlInterfaceTarget(erp_url)
        with_master_data(target)
        env = {
            "DAGSTER_PG_HOST": pg.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(pg.port or 5432),
            "DAGSTER_PG_DB": instance_db,
            "DAGSTER_PG_USER": pg.username or "postgres",
            "DAGSTER_PG_PASSWORD": "",
            "STAGEPOST_DATA_DIR": str(tmp_path / "data"),
            "STAGEPOST_STAGING_URL": str(pg_db.engine.url.render_as_string(hide_password=False)),
            "STAGEPOST_ERP_URL": erp_url,
        }
        for pool, limit in ((STAGING_WRITE, 1), (ERP_POSTING, 2), (RECONCILIATION, 1)):
            subprocess.run(
                [str(Path(sys.executable).parent / "dagster"), "instance", "concurrency", "set"]
                + [pool, str(limit)],
                env={**os.environ, **env, "DAGSTER_HOME": str(home)},
                check=True,
                capture_output=True,
            )

        def window(entity: str) -> dict:
            cfg = {"dry_run": False, "operator": "ana", "legal_entities": [entity]}
            return {"ops": {POSTING_ASSET: {"config": cfg}}}

        with dagster_ui(home, env, tmp_path / "dg_dev.log") as ui:
            de1 = ui.launch(posting_window_job.name, window("DE01"), {ENTITY_TAG: "DE01"})
            de2 = ui.launch(posting_window_job.name, window("DE01"), {ENTITY_TAG: "DE01"})
            us1 = ui.launch(posting_window_job.name, window("US01"), {ENTITY_TAG: "US01"})
            runs = ui.wait([de1, de2, us1])
            # When the queue handed each run to the launcher (its windows take a second, less
            # than a run process takes to start, so the processes themselves may not overlap).
            dequeued = {r: _dequeued_at(ui, r) for r in (de1, de2, us1)}
        assert {r["status"] for r in runs.values()} == {"SUCCESS"}, runs
        assert not _overlap(runs[de1], runs[de2]), "one window per legal entity at a time"
        first, second = sorted((de1, de2), key=lambda r: dequeued[r])
        assert dequeued[second] >= float(runs[first]["endTime"]) - 1, (dequeued, runs)
        assert dequeued[us1] < float(runs[first]["endTime"]), (
            "the queue starts a window of another legal entity while one runs",
            dequeued,
            runs,
            _daemon_lines(ui.log),
        )
        lines = erp_lines(target)
        target.close()
    assert len(lines) == 40 and lines["external_id"].is_unique
