"""End to end from a real OpenSSH SFTP inbox into staging: exactly once through dropped
connections and crashes, untrusted remote names, and no secret in any log or run record."""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, EnvVar, materialize, serialize_value

from assets.ingestion import landed_asset_key, landing_assets
from connectors.sources.base import RemoteFile
from connectors.sources.canonical import TIME_ENTRIES
from connectors.sources.formats import FileFormat
from connectors.sources.sftp import SftpSource
from resources.psa_source import PsaSource
from resources.staging import StagingDatabase
from staging_models.db import StagingDB
from staging_models.landing import ingest_dataset
from tests.support.csvtools import te, write_csv
from tests.support.sftp_server import SftpServer

pytest_plugins = ["tests.support.sftp_fixtures"]


def landed(db: StagingDB) -> tuple[int, int, int]:
    """(landed loads, landing rows, versions)."""
    return (
        db.scalar("SELECT COUNT(*) FROM loads WHERE status = 'landed'"),
        db.scalar("SELECT COUNT(*) FROM land_time_entries"),
        db.scalar("SELECT COUNT(*) FROM stg_time_entries"),
    )


def inbox_names(server: SftpServer) -> list[str]:
    return sorted(p.name for p in server.inbox.iterdir() if p.is_file())


def test_inbox_lands_once_and_is_archived_on_the_server(
    sftp_server: SftpServer, any_db: StagingDB, tmp_path: Path
) -> None:
    write_csv(sftp_server.inbox / "time_entries_1.csv", "time_entries", [te(), te(entry_id="TE2")])
    plain = write_csv(tmp_path / "x.csv", "time_entries", [te(entry_id="TE3")], encoding="cp1252")
    (sftp_server.inbox / "time_entries_2.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    write_csv(sftp_server.inbox / "employees_1.csv", "employees", [])  # another dataset
    work = tmp_path / "work"
    with sftp_server.source() as src:
        report = ingest_dataset(
            any_db, src, "time_entries", workdir=work, fmt=FileFormat(encoding="cp1252")
        )
    assert report.totals()["files_landed"] == 2 and not report.failures
    assert landed(any_db) == (2, 3, 3)
    assert inbox_names(sftp_server) == ["employees_1.csv"]
    assert sorted(p.name for p in sftp_server.archive.iterdir()) == [
        "time_entries_1.csv",
        "time_entries_2.csv.gz",
    ]
    assert [p.name for p in work.iterdir()] == []  # fetched copies and scratch removed

    # The PSA re-delivers a file it already sent: recognised by checksum, archived again.
    os.replace(sftp_server.archive / "time_entries_1.csv", sftp_server.inbox / "time_entries_1.csv")
    with sftp_server.source() as src:
        again = ingest_dataset(any_db, src, "time_entries", workdir=work)
    assert [r.status for r in again.results] == ["duplicate"]
    assert landed(any_db) == (2, 3, 3)
    assert inbox_names(sftp_server) == ["employees_1.csv"]


def _big_export(path: Path, blocks: int) -> int:
    """A canonical export of `blocks` x 5000 distinct entries (about 1 MB per 5000)."""
    cols = TIME_ENTRIES.layout
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(",".join(cols) + "\r\n")  # csv.writer ends rows with CRLF too
        for b in range(blocks):
            buf = io.StringIO()
            w = csv.writer(buf)
            for i in range(5000):
                r = te(entry_id=f"TE{b}-{i}")
                w.writerow([r[c] for c in cols])
            f.write(buf.getvalue())
    return blocks * 5000


def _kill_when_partial(server: SftpServer, part: Path, threshold: int, killed: list[int]):
    """Kill the server side of every session once the download's temp file holds `threshold`
    bytes (the connection drops mid-transfer, as when a firewall or the server restarts)."""

    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if part.exists() and part.stat().st_size >= threshold:
                killed.append(server.kill_sessions())
                return
            time.sleep(0.001)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_connection_killed_mid_download_then_rerun_lands_exactly_once(
    sftp_server: SftpServer, duck_db: StagingDB, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connectors")
    name = "time_entries_big.csv"
    rows = _big_export(sftp_server.inbox / name, 30)  # ~20 MB
    size = (sftp_server.inbox / name).stat().st_size
    work = tmp_path / "work"
    part = work / f".{name}.part"

    # 1. No retries: the dropped connection fails this file for this pass; nothing lands.
    killed: list[int] = []
    with sftp_server.source(retries=0) as src:
        watcher = _kill_when_partial(sftp_server, part, size // 4, killed)
        report = ingest_dataset(duck_db, src, "time_entries", workdir=work)
        watcher.join()
    assert killed and killed[0] > 0, "the session was never killed mid-transfer"
    assert not report.results and len(report.failures) == 1
    assert (
        name in report.failures[0].message
        and "failed after 1 attempt" in report.failures[0].message
    )
    assert landed(duck_db) == (0, 0, 0)
    assert inbox_names(sftp_server) == [name] and list(work.iterdir()) == []

    # 2. The next pass, killed again mid-download: it resumes, lands once, archives.
    killed.clear()
    with sftp_server.source(retries=2) as src:
        watcher = _kill_when_partial(sftp_server, part, size // 2, killed)
        report = ingest_dataset(duck_db, src, "time_entries", workdir=work)
        watcher.join()
    assert killed and "resuming" in caplog.text
    assert not report.failures, report.failures[0].message
    assert [r.rows_read for r in report.results] == [rows]
    assert landed(duck_db) == (1, rows, rows)
    assert inbox_names(sftp_server) == [] and (sftp_server.archive / name).exists()

    # 3. A third pass has nothing to do.
    with sftp_server.source() as src:
        assert not ingest_dataset(duck_db, src, "time_entries", workdir=work).results
    assert landed(duck_db) == (1, rows, rows)


class Crash(BaseException):
    """The process dying (OOM kill, power loss) between two statements."""


class CrashingArchive(SftpSource):
    """An SFTP source whose process 'dies' right after the load committed, before archiving:
    the one fault a real server cannot produce on demand."""

    def archive(self, file: RemoteFile) -> None:
        raise Crash(file.name)


def test_crash_between_landing_and_archiving_lands_nothing_twice(
    sftp_server: SftpServer, any_db: StagingDB, tmp_path: Path
) -> None:
    write_csv(sftp_server.inbox / "time_entries_1.csv", "time_entries", [te(), te(entry_id="TE2")])
    work = tmp_path / "work"
    with pytest.raises(Crash), CrashingArchive(**sftp_server.source_kwargs()) as src:
        ingest_dataset(any_db, src, "time_entries", workdir=work)
    assert landed(any_db) == (1, 2, 2)
    assert inbox_names(sftp_server) == ["time_entries_1.csv"]  # never archived

    with sftp_server.source() as src:
        report = ingest_dataset(any_db, src, "time_entries", workdir=work)
    assert [r.status for r in report.results] == ["duplicate"]
    assert landed(any_db) == (1, 2, 2)
    assert inbox_names(sftp_server) == []
    assert (sftp_server.archive / "time_entries_1.csv").exists()


def _tree(root: Path, skip: tuple[Path, ...]) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if not any(p == s or s in p.parents for s in skip)
    }


def test_remote_names_never_become_paths_outside_the_work_folder(
    sftp_server: SftpServer, duck_db: StagingDB, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hostile or broken server lists names with `..` and separators; ingestion lands the
    files whose names are harmless once reduced to a base name, in the work folder only."""
    rows = [te(entry_id="X")]
    traversal = "time_entries..\\..\\..\\evil.csv"  # backslashes: legal in a POSIX file name
    encoded = "time_entries_..%2f..%2fevil.csv"
    write_csv(sftp_server.inbox / traversal, "time_entries", rows)
    write_csv(sftp_server.inbox / encoded, "time_entries", [te(entry_id="Y")])
    write_csv(sftp_server.inbox / "..time_entries_hidden.csv", "time_entries", rows)
    outside = write_csv(sftp_server.root / "time_entries_outside.csv", "time_entries", rows)
    (sftp_server.inbox / "time_entries_link.csv").symlink_to(outside)  # points out of the inbox
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    skip = (sftp_server.workdir, tmp_path / "staging.duckdb", tmp_path / "staging.duckdb.wal")
    before = _tree(tmp_path, skip)

    with sftp_server.source() as src:
        report = ingest_dataset(duck_db, src, "time_entries", workdir=work)

    assert [r.file_name for r in report.results] == [encoded] and not report.failures
    assert duck_db.scalar("SELECT string_agg(entry_id, ',') FROM land_time_entries") == "Y"
    assert duck_db.scalar("SELECT file_name FROM loads") == encoded  # the remote name, as text
    assert _tree(tmp_path, skip) - before == set()  # nothing written anywhere, work included
    assert not list(tmp_path.rglob("evil.csv"))
    assert "ignoring remote entry with unsafe name" in caplog.text
    # The unsafe, hidden and linked entries are left alone on the server.
    assert sorted(inbox_names(sftp_server)) == sorted(
        [traversal, "..time_entries_hidden.csv", "time_entries_link.csv"]
    )
    assert outside.exists()


def test_passphrase_and_key_never_reach_logs_or_run_records(
    sftp_server: SftpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # paramiko's own debug log included
    keys = sftp_server.keys
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STAGEPOST_SFTP_KEY_PASSPHRASE", keys.passphrase)
    write_csv(sftp_server.inbox / "time_entries_1.csv", "time_entries", [te()])
    instance = DagsterInstance.ephemeral()
    staging = StagingDatabase(url=f"duckdb:///{tmp_path / 'staging.duckdb'}")

    def source(passphrase) -> PsaSource:
        return PsaSource(
            kind="sftp",
            host=sftp_server.host,
            port=sftp_server.port,
            username=sftp_server.user,
            key_path=str(keys.encrypted_key),
            key_passphrase=passphrase,
            known_hosts_path=str(sftp_server.known_hosts),
            inbox=str(sftp_server.inbox),
        )

    texts: list[str] = []
    runs = [
        (EnvVar("STAGEPOST_SFTP_KEY_PASSPHRASE"), True),  # production: settings uses EnvVar
        (keys.passphrase, False),  # plain config; the run after lists an empty inbox
        (keys.passphrase[:-1], False),  # wrong passphrase: a failed run with an error
        (None, False),  # no passphrase for an encrypted key
    ]
    for passphrase, lands in runs:
        if passphrase == keys.passphrase:
            write_csv(sftp_server.inbox / "time_entries_2.csv", "time_entries", [te(entry_id="B")])
        result = materialize(
            [
                a
                for a in landing_assets
                if a.key.to_user_string() == landed_asset_key("time_entries")
            ],
            resources={"staging": staging, "psa_source": source(passphrase)},
            instance=instance,
            raise_on_error=False,
        )
        expect_ok = passphrase is not None and passphrase != keys.passphrase[:-1]
        assert result.success == expect_ok, passphrase
        if lands:
            (m,) = result.asset_materializations_for_node(landed_asset_key("time_entries"))
            assert m.metadata["files_landed"].value == 1
            assert m.metadata["source"].value.startswith("sftp://")
        run = instance.get_run_by_id(result.run_id)
        texts.append(serialize_value(run))
        failures = 0
        for entry in instance.all_logs(result.run_id):
            texts.append(serialize_value(entry))
            texts.append(entry.message or "")
            if entry.dagster_event and entry.dagster_event.is_step_failure:
                err = entry.dagster_event.step_failure_data.error
                texts.append(err.to_string())
                assert "key_passphrase" in err.to_string()  # the failure says what to fix
                failures += 1
        assert (failures > 0) == (not expect_ok)  # a failing run failed in its step
    texts.append(caplog.text)
    everything = "\n".join(texts)
    assert "time_entries_1.csv" in everything  # the capture did see the runs' logs
    key_lines = keys.encrypted_key.read_text().splitlines()[1:-1]
    assert keys.passphrase not in everything
    assert keys.passphrase[:-1] not in everything
    assert not any(line in everything for line in key_lines)


def test_retryable_fetch_failure_is_reported_per_file(
    sftp_server: SftpServer, duck_db: StagingDB, tmp_path: Path
) -> None:
    """A file that vanishes between listing and download fails that file, not the pass."""
    write_csv(sftp_server.inbox / "time_entries_1.csv", "time_entries", [te()])
    write_csv(sftp_server.inbox / "time_entries_2.csv", "time_entries", [te(entry_id="B")])

    class Racing(SftpSource):
        def list_complete(self, dataset: str | None = None) -> list[RemoteFile]:
            files = super().list_complete(dataset)
            with open(sftp_server.inbox / "time_entries_1.csv", "a") as f:
                f.write("late,row\n")  # the PSA rewrote it right after the listing
            return files

    with Racing(**sftp_server.source_kwargs()) as src:
        report = ingest_dataset(duck_db, src, "time_entries", workdir=tmp_path / "work")
    assert [r.file_name for r in report.results] == ["time_entries_2.csv"]
    (failure,) = report.failures
    assert "changed since it was listed" in failure.message
    assert inbox_names(sftp_server) == ["time_entries_1.csv"]
