"""A file that cannot be landed as it is (its columns, format or name) is refused, set aside
into `rejected/` with a reason file, recorded in `loads`, and never stalls the run: the other
files land, validation runs, and a warning check stays red until the refusal is resolved.
Locally and over a real OpenSSH SFTP server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, DagsterInstance, Definitions

from assets.ingestion import REFUSED_CHECK, landed_asset_key, landing_assets, refused_check
from assets.validation import validated_time_entries, validation_assets, validation_checks
from connectors.sources.base import reason_file_name
from connectors.sources.local import LocalFolderSource
from pipelines.jobs import ingest_time_entries_job
from resources.psa_source import PsaSource
from resources.staging import StagingDatabase
from staging_models.db import StagingDB, dispose_all, staging_db
from staging_models.landing import ingest_dataset, unsettled_message
from staging_models.validation import conservation
from tests.support.csvtools import te, write_csv
from tests.support.sftp_server import SftpServer

VALIDATED_TIME_ENTRIES = validated_time_entries.key.to_user_string()

pytest_plugins = ["tests.support.sftp_fixtures"]

LATIN1 = os.fsdecode(b"time_entries_\xe9t\xe9.csv")  # Latin-1 bytes: not valid UTF-8
LONG = "time_entries_" + "x" * (255 - len("time_entries_.csv")) + ".csv"  # 255 bytes


def missing_column_file(path: Path) -> Path:
    path.write_text("entry_id,hours\nTE9,1\n")  # no employee_id, project_code, ...
    return path


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def _job_run(inbox: Path, url: str, instance: DagsterInstance, source: PsaSource | None = None):
    defs = Definitions(
        assets=[*landing_assets, *validation_assets],
        asset_checks=validation_checks,
        jobs=[ingest_time_entries_job],
        resources={
            "staging": StagingDatabase(url=url),
            "psa_source": source or PsaSource(inbox=str(inbox), stable_seconds=0),
        },
    )
    job = defs.resolve_job_def(ingest_time_entries_job.name)
    return job.execute_in_process(instance=instance, raise_on_error=False)


def _refused_check(result):
    (ev,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == REFUSED_CHECK
        and e.asset_key.to_user_string() == landed_asset_key("time_entries")
    ]
    return ev


def test_refused_file_is_set_aside_and_the_run_goes_on(tmp_path: Path, data_dir: Path) -> None:
    inbox = tmp_path / "inbox"
    write_csv(inbox / "time_entries_good.csv", "time_entries", [te(), te(entry_id="TE2")])
    missing_column_file(inbox / "time_entries_bad.csv")
    url = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    instance = DagsterInstance.ephemeral()

    first = _job_run(inbox, url, instance)
    assert first.success  # a refused file no longer fails the landing step
    materialized = {e.asset_key.to_user_string() for e in first.get_asset_materialization_events()}
    assert {
        landed_asset_key("time_entries"),
        VALIDATED_TIME_ENTRIES,
    } <= materialized  # validation ran

    # Set aside, with the reason next to it; the good file landed and was archived.
    rejected = inbox / "rejected"
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == []
    assert (rejected / "time_entries_bad.csv").exists()
    reason = (rejected / "time_entries_bad.csv.reason.txt").read_text()
    assert "time_entries_bad.csv" in reason and "missing column(s) employee_id" in reason
    assert (inbox / "archive" / "time_entries_good.csv").exists()

    db = staging_db(url)
    loads = db.query_df("SELECT file_name, status, message FROM loads ORDER BY file_name")
    assert loads[["file_name", "status"]].values.tolist() == [
        ["time_entries_bad.csv", "refused"],
        ["time_entries_good.csv", "landed"],
    ]
    assert loads["message"][0].startswith("time_entries_bad.csv: missing column(s) employee_id")
    cons = conservation(db, ("time_entries",))
    assert cons["states_ok"].all() and int(cons["pending"].iloc[0]) == 0  # nothing stalls

    # The landing metadata and the warning check name the file.
    (mat,) = [
        e.materialization
        for e in first.get_asset_materialization_events()
        if e.asset_key.to_user_string() == landed_asset_key("time_entries")
    ]
    assert mat.metadata["files_refused"].value == 1
    assert "time_entries_bad.csv" in mat.metadata["refused"].value
    check = _refused_check(first)
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert list(check.metadata["files"].value) == ["time_entries_bad.csv"]

    # The next run: nothing new to refuse, the check stays red while the file waits.
    second = _job_run(inbox, url, instance)
    assert second.success and not _refused_check(second).passed
    assert db.scalar("SELECT COUNT(*) FROM loads WHERE status = 'refused'") == 1

    # Re-dropping the fixed file lands it, and resolves the refusal.
    write_csv(inbox / "time_entries_bad.csv", "time_entries", [te(entry_id="TE9")])
    third = _job_run(inbox, url, instance)
    assert third.success and _refused_check(third).passed
    assert db.scalar("SELECT COUNT(*) FROM land_time_entries WHERE entry_id = 'TE9'") == 1
    assert (inbox / "archive" / "time_entries_bad.csv").exists()
    dispose_all()


def test_deleting_a_refused_file_from_rejected_resolves_it(duck_db: StagingDB, tmp_path: Path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    missing_column_file(inbox / "time_entries_bad.csv")
    src = LocalFolderSource(inbox, stable_seconds=0)
    ingest_dataset(duck_db, src, "time_entries", workdir=tmp_path / "work")
    assert not refused_check(duck_db, src, "time_entries").passed
    (inbox / "rejected" / "time_entries_bad.csv").unlink()  # an operator gives it up
    assert refused_check(duck_db, src, "time_entries").passed


def test_posting_refusal_names_the_files(duck_db: StagingDB, tmp_path: Path) -> None:
    """Landed but not validated yet: the posting refusal names where the pending rows come
    from and the refused files that never landed."""
    inbox = tmp_path / "inbox"
    write_csv(inbox / "time_entries_a.csv", "time_entries", [te(), te(entry_id="TE2")])
    missing_column_file(inbox / "time_entries_b.csv")
    ingest_dataset(
        duck_db, LocalFolderSource(inbox, stable_seconds=0), "time_entries", workdir=tmp_path
    )
    message = unsettled_message(duck_db, ["time_entries"])
    assert "time_entries (2 row(s) from time_entries_a.csv)" in message
    assert "refused files, not landed (see the rejected folder): time_entries_b.csv" in message


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (LATIN1, "not valid UTF-8"),
        (LONG, "255 bytes long"),
        ("time_entries_two\nlines.csv", "control characters"),
        ("time_entries_a\\b.csv", "backslash"),
    ],
    ids=["latin1", "255-bytes", "newline", "backslash"],
)
def test_unlandable_names_are_refused_and_set_aside_locally(
    any_db: StagingDB, tmp_path: Path, name: str, why: str
) -> None:
    inbox = tmp_path / "inbox"
    write_csv(inbox / name, "time_entries", [te(entry_id="N")])
    if name != LONG:  # a marker for a 255-byte name cannot exist
        (inbox / f"{name}.done").touch()
    write_csv(inbox / "time_entries_ok.csv", "time_entries", [te(entry_id="OK")])
    src = LocalFolderSource(inbox, stable_seconds=0)
    for _ in range(2):  # the second pass finds nothing left to refuse or land
        report = ingest_dataset(any_db, src, "time_entries", workdir=tmp_path / "work")
        assert not report.failures
    assert [r.file_name for r in report.results] == [] and not report.refused
    loads = any_db.query_df("SELECT file_name, status, message FROM loads ORDER BY status")
    assert loads["status"].tolist() == ["landed", "refused"]
    shown = loads["file_name"][1]
    assert why in loads["message"][1] and loads["message"][1].startswith(shown)
    if name == LATIN1:
        assert shown == "time_entries_\\xe9t\\xe9.csv"  # the bytes, readable
    rejected = set(os.listdir(inbox / "rejected"))
    assert {name, reason_file_name(name)} <= rejected
    assert (f"{name}.done" in rejected) == (name != LONG)  # the marker moves with its file
    assert sorted(os.listdir(inbox)) == ["archive", "rejected"]
    assert any_db.scalar("SELECT string_agg(entry_id, ',') FROM land_time_entries") == "OK"


def test_glob_characters_in_a_name_read_only_that_file(duck_db: StagingDB, tmp_path: Path):
    """DuckDB reads a path with `*`, `?` or `[` as a glob: `time_entries_*.csv` used to land
    the rows of every time-entry file in the inbox under its own name."""
    inbox = tmp_path / "inbox"
    names = ["time_entries_*.csv", "time_entries_?.csv", "time_entries_[ab].csv"]
    names += ["time_entries_a.csv", "time_entries_b.csv"]
    for i, n in enumerate(names):
        write_csv(inbox / n, "time_entries", [te(entry_id=f"E{i}")])
    report = ingest_dataset(
        duck_db, LocalFolderSource(inbox, stable_seconds=0), "time_entries", workdir=tmp_path
    )
    assert not report.failures and not report.refused
    per_file = dict(
        duck_db.query_df(
            """SELECT f.file_name, string_agg(t.entry_id, ',') AS ids FROM land_time_entries t
               JOIN loads f USING (load_id) GROUP BY f.file_name"""
        ).values
    )
    assert per_file == {n: f"E{i}" for i, n in enumerate(names)}

    missing_column_file(inbox / "time_entries_[x].csv")
    report = ingest_dataset(
        duck_db, LocalFolderSource(inbox, stable_seconds=0), "time_entries", workdir=tmp_path
    )
    (refusal,) = report.refused  # named as it is, not as the alias it was read through
    assert refusal.message.startswith("time_entries_[x].csv: missing column(s) employee_id")


# -- over SFTP -------------------------------------------------------------------------------


def test_refused_file_over_sftp(sftp_server: SftpServer, any_db: StagingDB, tmp_path: Path):
    inbox = sftp_server.inbox
    write_csv(inbox / "time_entries_good.csv", "time_entries", [te()])
    missing_column_file(inbox / "time_entries_bad.csv")
    (inbox / "time_entries_bad.csv.done").touch()
    work = tmp_path / "work"
    with sftp_server.source() as src:
        report = ingest_dataset(any_db, src, "time_entries", workdir=work)
        check = refused_check(any_db, src, "time_entries")
    assert [r.file_name for r in report.results] == ["time_entries_good.csv"]
    (refusal,) = report.refused
    assert refusal.message.startswith("time_entries_bad.csv: missing column(s) employee_id")
    assert "set aside in" in refusal.message
    rejected = inbox / "rejected"
    assert sorted(os.listdir(rejected)) == [
        "time_entries_bad.csv",
        "time_entries_bad.csv.done",
        "time_entries_bad.csv.reason.txt",
    ]
    assert "missing column(s)" in (rejected / "time_entries_bad.csv.reason.txt").read_text()
    assert any_db.scalar("SELECT status FROM loads WHERE file_name = 'time_entries_bad.csv'") == (
        "refused"
    )
    assert not check.passed and "time_entries_bad.csv" in check.metadata["files"].value
    assert sorted(os.listdir(inbox)) == ["archive", "rejected"]

    write_csv(inbox / "time_entries_bad.csv", "time_entries", [te(entry_id="FIXED")])
    with sftp_server.source() as src:
        again = ingest_dataset(any_db, src, "time_entries", workdir=work)
        assert refused_check(any_db, src, "time_entries").passed
    assert [r.file_name for r in again.results] == ["time_entries_bad.csv"]
    assert list(work.iterdir()) == []


def test_refused_file_does_not_stall_an_sftp_run(
    sftp_server: SftpServer, tmp_path: Path, data_dir: Path
) -> None:
    inbox = sftp_server.inbox
    write_csv(inbox / "time_entries_good.csv", "time_entries", [te()])
    missing_column_file(inbox / "time_entries_bad.csv")
    source = PsaSource(
        kind="sftp",
        host=sftp_server.host,
        port=sftp_server.port,
        username=sftp_server.user,
        key_path=str(sftp_server.keys.key),
        known_hosts_path=str(sftp_server.known_hosts),
        inbox=str(inbox),
        stable_seconds=0,
    )
    url = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    result = _job_run(inbox, url, DagsterInstance.ephemeral(), source)
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {landed_asset_key("time_entries"), VALIDATED_TIME_ENTRIES} <= materialized
    check = _refused_check(result)
    assert not check.passed and list(check.metadata["files"].value) == ["time_entries_bad.csv"]
    assert (inbox / "rejected" / "time_entries_bad.csv.reason.txt").exists()
    assert (inbox / "archive" / "time_entries_good.csv").exists()
    assert int(conservation(staging_db(url), ("time_entries",))["pending"].iloc[0]) == 0
    dispose_all()


def test_unlandable_names_are_refused_over_sftp(
    sftp_server: SftpServer, duck_db: StagingDB, tmp_path: Path
) -> None:
    """paramiko decodes every listed name as UTF-8: one Latin-1 name used to fail the whole
    listing, on every run. Now it and a 255-byte name are refused and set aside on the server."""
    inbox = sftp_server.inbox
    for name in (LATIN1, LONG):
        write_csv(inbox / name, "time_entries", [te(entry_id="N")])
    write_csv(inbox / "time_entries_ok.csv", "time_entries", [te(entry_id="OK")])
    for name in (LATIN1, "time_entries_ok.csv"):
        (inbox / f"{name}.done").touch()  # a 255-byte name cannot have one: refused anyway
    with sftp_server.source(done_markers=True) as src:
        report = ingest_dataset(duck_db, src, "time_entries", workdir=tmp_path / "work")
    assert not report.failures
    assert [r.file_name for r in report.results] == ["time_entries_ok.csv"]
    refused = {r.file_name: r.message for r in report.refused}
    assert set(refused) == {"time_entries_\\xe9t\\xe9.csv", LONG}
    assert "not valid UTF-8" in refused["time_entries_\\xe9t\\xe9.csv"]
    rejected = os.listdir(inbox / "rejected")
    for name in (LATIN1, LONG):
        assert name in rejected and reason_file_name(name) in rejected
    assert f"{LATIN1}.done" in rejected
    assert sorted(os.listdir(inbox)) == ["archive", "rejected"]
    assert duck_db.scalar("SELECT COUNT(*) FROM loads WHERE status = 'refused'") == 2


def test_sensor_run_for_a_latin1_name_sets_it_aside(tmp_path: Path, data_dir: Path) -> None:
    """The inbox sensor asks for a run per file, tagged with its name as safe text; that run
    refuses the file instead of crashing on it every time."""
    from dagster import build_sensor_context, materialize

    from assets.ingestion import FILE_TAG
    from pipelines.sensors import psa_inbox_sensor

    inbox = tmp_path / "inbox"
    write_csv(inbox / LATIN1, "time_entries", [te(entry_id="N")])
    source = PsaSource(inbox=str(inbox), stable_seconds=0)
    tick = psa_inbox_sensor.evaluate_tick(build_sensor_context(resources={"psa_source": source}))
    (req,) = tick.run_requests
    assert req.tags[FILE_TAG] == "time_entries_\\xe9t\\xe9.csv"
    assert req.run_key.startswith("time_entries_\\xe9t\\xe9.csv|")
    url = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    result = materialize(
        landing_assets,
        tags=dict(req.tags),
        resources={"staging": StagingDatabase(url=url), "psa_source": source},
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    assert os.listdir(inbox / "rejected").count(LATIN1) == 1
    db = staging_db(url)
    assert db.scalar("SELECT file_name FROM loads WHERE status = 'refused'") == (
        "time_entries_\\xe9t\\xe9.csv"
    )
    dispose_all()
