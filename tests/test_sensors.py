"""The inbox sensor against a local folder and a real SFTP server, and the runs it launches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    build_sensor_context,
    materialize,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData

from assets.ingestion import FILE_TAG, landed_asset_key, landing_assets
from pipelines.jobs import ingest_nightly_job, ingest_time_entries_job
from pipelines.sensors import psa_inbox_sensor
from resources.psa_source import PsaSource
from resources.staging import StagingDatabase
from staging_models.db import StagingDB
from tests.support.csvtools import te, write_csv
from tests.support.sftp_server import SftpServer

pytest_plugins = ["tests.support.sftp_fixtures"]


@pytest.fixture(scope="module")
def instance() -> DagsterInstance:
    return DagsterInstance.ephemeral()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def tick(source: PsaSource, cursor: str | None = None) -> SensorExecutionData:
    ctx = build_sensor_context(cursor=cursor, resources={"psa_source": source})
    return psa_inbox_sensor.evaluate_tick(ctx)


def by_file(data: SensorExecutionData) -> dict[str, RunRequest]:
    return {r.tags[FILE_TAG]: r for r in data.run_requests or []}


def run(req: RunRequest | None, source: PsaSource, db_url: str, instance: DagsterInstance) -> dict:
    """Execute what a run request asks for (every landing asset, as in the jobs), or an
    untagged run (what the schedules launch)."""
    result = materialize(
        landing_assets,
        tags=dict(req.tags) if req else None,
        resources={"staging": StagingDatabase(url=db_url), "psa_source": source},
        instance=instance,
    )
    assert result.success
    return {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }


def test_sensor_is_stopped_by_default_and_loads_with_the_jobs() -> None:
    from pipelines.definitions import defs

    assert psa_inbox_sensor.default_status == DefaultSensorStatus.STOPPED
    Definitions.validate_loadable(defs)
    sensor_def = defs.get_repository_def().get_sensor_def(psa_inbox_sensor.name)
    assert {j.name for j in sensor_def.jobs} == {
        ingest_time_entries_job.name,
        ingest_nightly_job.name,
        "deal_setup_job",  # CRM deals and project templates land in the set-up's job
    }


def test_local_folder_one_run_per_new_complete_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write_csv(inbox / "time_entries_1.csv", "time_entries", [te()])
    write_csv(inbox / "projects_2026-11.csv", "projects", [])
    (inbox / "notes.txt").write_text("not a dataset")
    (inbox / "time_entries_2.csv.part").write_text("still uploading")
    source = PsaSource(inbox=str(inbox), stable_seconds=0)  # files written just now

    first = tick(source)
    runs = by_file(first)
    assert sorted(runs) == ["projects_2026-11.csv", "time_entries_1.csv"]
    te_run, pr_run = runs["time_entries_1.csv"], runs["projects_2026-11.csv"]
    assert te_run.job_name == ingest_time_entries_job.name
    assert pr_run.job_name == ingest_nightly_job.name
    assert te_run.asset_selection is None  # the whole job: landing, then what follows it
    st = (inbox / "time_entries_1.csv").stat()
    assert te_run.run_key.startswith(f"time_entries_1.csv|{st.st_size}|{int(st.st_mtime)}")
    assert te_run.tags["stagepost/dataset"] == "time_entries"

    second = tick(source, first.cursor)
    assert not second.run_requests and "no new complete files" in second.skip_message

    # Rewritten in place: a new delivery, a new run; the unchanged file is not asked again.
    write_csv(inbox / "time_entries_1.csv", "time_entries", [te(), te(entry_id="TE2")])
    os.utime(inbox / "time_entries_1.csv", (st.st_atime, st.st_mtime + 5))
    third = tick(source, second.cursor)
    assert sorted(by_file(third)) == ["time_entries_1.csv"]
    assert by_file(third)["time_entries_1.csv"].run_key != te_run.run_key

    # Archived files leave the cursor: it holds what the inbox holds.
    (inbox / "projects_2026-11.csv").unlink()
    fourth = tick(source, third.cursor)
    assert [k.split("|")[0] for k in json.loads(fourth.cursor)["files"]] == ["time_entries_1.csv"]


def test_tagged_run_lands_only_its_file_untagged_lands_all(
    tmp_path: Path, data_dir: Path, instance: DagsterInstance
) -> None:
    inbox = tmp_path / "inbox"
    write_csv(inbox / "time_entries_a.csv", "time_entries", [te(entry_id="A")])
    write_csv(inbox / "time_entries_b.csv", "time_entries", [te(entry_id="B")])
    write_csv(inbox / "time_entries_c.csv", "time_entries", [te(entry_id="C")])
    write_csv(inbox / "projects_1.csv", "projects", [])
    source = PsaSource(inbox=str(inbox), stable_seconds=0)  # files written just now
    url = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    req = by_file(tick(source))["time_entries_a.csv"]

    metas = run(req, source, url, instance)
    meta = metas[landed_asset_key("time_entries")]
    assert meta["files"].value == ["time_entries_a.csv"]
    assert meta["requested_file"].value == "time_entries_a.csv"
    assert metas[landed_asset_key("projects")]["files_landed"].value == 0  # ran, landed nothing
    assert sorted(p.name for p in inbox.glob("*.csv")) == [
        "projects_1.csv",
        "time_entries_b.csv",
        "time_entries_c.csv",
    ]
    db = StagingDB(url)
    assert db.scalar("SELECT string_agg(entry_id, ',') FROM land_time_entries") == "A"
    db.engine.dispose()

    # The same request again (a retried run): the file is archived, nothing lands twice.
    meta = run(req, source, url, instance)[landed_asset_key("time_entries")]
    assert meta["files"].value == [] and meta["files_landed"].value == 0

    meta = run(None, source, url, instance)[landed_asset_key("time_entries")]  # the schedule's run
    assert meta["files"].value == ["time_entries_b.csv", "time_entries_c.csv"]
    db = StagingDB(url)
    assert db.scalar("SELECT COUNT(*) FROM land_time_entries") == 3
    db.engine.dispose()


def test_sensor_on_a_real_sftp_inbox(
    sftp_server: SftpServer, tmp_path: Path, data_dir: Path, instance: DagsterInstance
) -> None:
    write_csv(sftp_server.inbox / "time_entries_1.csv", "time_entries", [te(entry_id="A")])
    write_csv(sftp_server.inbox / "time_entries_2.csv", "time_entries", [te(entry_id="B")])
    write_csv(sftp_server.inbox / "employees.csv", "employees", [])
    (sftp_server.inbox / "time_entries_3.csv").write_text("entry_id\n")  # no marker yet
    for name in ("time_entries_1.csv", "time_entries_2.csv", "employees.csv"):
        (sftp_server.inbox / f"{name}.done").touch()
    source = PsaSource(
        kind="sftp",
        host=sftp_server.host,
        port=sftp_server.port,
        username=sftp_server.user,
        key_path=str(sftp_server.keys.key),
        known_hosts_path=str(sftp_server.known_hosts),
        inbox=str(sftp_server.inbox),
        done_markers=True,
    )
    first = tick(source)
    runs = by_file(first)
    assert sorted(runs) == ["employees.csv", "time_entries_1.csv", "time_entries_2.csv"]
    assert runs["employees.csv"].job_name == ingest_nightly_job.name
    size = (sftp_server.inbox / "time_entries_1.csv").stat().st_size
    mtime = int((sftp_server.inbox / "time_entries_1.csv").stat().st_mtime)
    assert runs["time_entries_1.csv"].run_key == f"time_entries_1.csv|{size}|{mtime}"

    url = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    meta = run(runs["time_entries_1.csv"], source, url, instance)[landed_asset_key("time_entries")]
    assert meta["files"].value == ["time_entries_1.csv"]
    assert sorted(p.name for p in sftp_server.archive.iterdir()) == [
        "time_entries_1.csv",
        "time_entries_1.csv.done",
    ]
    second = tick(source, first.cursor)
    assert second.skip_message and not second.run_requests
    assert sorted(k.split("|")[0] for k in json.loads(second.cursor)["files"]) == [
        "employees.csv",
        "time_entries_2.csv",
    ]


def test_vendor_files_are_seen_under_their_own_names_and_land_by_mapping(
    tmp_path: Path, data_dir: Path, instance: DagsterInstance
) -> None:
    """A Toggl and a Kimai export dropped as the vendors name them (nothing renamed), with
    STAGEPOST_MAPPING=toggl,kimai: the sensor asks one time-entry run per file, and a run lands
    its file through its own mapping, deriving the master data."""
    import shutil

    vendors = Path(__file__).resolve().parent / "data" / "vendors"
    toggl = vendors / "toggl" / "TogglTrack_Report_Detailed_2026-11-01_2026-11-30.csv"
    kimai = vendors / "kimai" / "20261130-acme-website.csv"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for f in (toggl, kimai):
        shutil.copy2(f, inbox / f.name)
    source = PsaSource(
        inbox=str(inbox), stable_seconds=0, mapping_file="toggl,kimai", default_legal_entity="DE01"
    )
    runs = by_file(tick(source))
    assert sorted(runs) == [kimai.name, toggl.name]
    assert {r.job_name for r in runs.values()} == {ingest_time_entries_job.name}
    assert {r.tags["stagepost/dataset"] for r in runs.values()} == {"time_entries"}

    url = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    meta = run(runs[kimai.name], source, url, instance)[landed_asset_key("time_entries")]
    assert meta["files"].value == [kimai.name]
    db = StagingDB(url)
    assert db.scalar("SELECT COUNT(*) FROM land_time_entries") == 5
    assert db.scalar("SELECT COUNT(*) FROM stg_projects WHERE is_current") == 1  # derived
    db.engine.dispose()
