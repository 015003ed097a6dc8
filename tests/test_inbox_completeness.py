"""Files still being written, scratch left by killed landings, and symbolic links in the inbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dagster import materialize

from assets.ingestion import landed_asset_key, landing_assets
from connectors.sources.base import RemoteFile
from connectors.sources.canonical import TIME_ENTRIES
from connectors.sources.local import LocalFolderSource
from resources.psa_source import PsaSource
from resources.staging import StagingDatabase
from staging_models.db import StagingDB
from staging_models.landing import ingest_dataset
from staging_models.scratch import clean_dead_scratch, owner_tag, scratch_dir
from tests.support.csvtools import te, write_csv
from tests.support.sftp_server import SftpServer

pytest_plugins = ["tests.support.sftp_fixtures"]

ROOT = Path(__file__).resolve().parents[1]


def _row(i: int) -> str:
    r = te(entry_id=f"G{i}")
    return ",".join(r[c] for c in TIME_ENTRIES.layout) + "\r\n"  # as csv.writer


def _append_rows(path: Path, start: int, stop: int, pause: float) -> None:
    """What a PSA export does: whole rows appended, flushed one by one."""
    with open(path, "a", encoding="utf-8") as f:
        for i in range(start, stop):
            f.write(_row(i))
            f.flush()
            time.sleep(pause)


def _landed_rows(db: StagingDB) -> int:
    return db.scalar("SELECT COUNT(*) FROM land_time_entries")


def test_growing_file_waits_and_lands_whole(duck_db: StagingDB, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    path = write_csv(inbox / "time_entries_growing.csv", "time_entries", [])
    writer = threading.Thread(target=_append_rows, args=(path, 0, 60, 0.03))
    writer.start()  # 60 rows over about 1.8 s
    time.sleep(0.1)
    src = LocalFolderSource(inbox, stable_seconds=1.0)
    first = ingest_dataset(duck_db, src, "time_entries", workdir=tmp_path / "work")
    writer.join()
    assert first.waiting == ["time_entries_growing.csv"] and not first.results
    assert _landed_rows(duck_db) == 0 and path.exists()

    second = ingest_dataset(duck_db, src, "time_entries", workdir=tmp_path / "work")
    assert [r.rows_read for r in second.results] == [60] and not second.waiting
    assert _landed_rows(duck_db) == 60
    assert (inbox / "archive" / "time_entries_growing.csv").exists()


class AppendAfterListing(LocalFolderSource):
    """The PSA appends rows right after the listing, while the file is being landed (the
    moment a timing default cannot be trusted with)."""

    def fetch(self, file: RemoteFile, dest_dir: Path) -> Path:
        path = super().fetch(file, dest_dir)
        if not getattr(self, "appended", False):
            self.appended = True
            _append_rows(path, 22, 60, 0)
        return path


def test_file_changed_between_listing_and_landing_is_not_landed(
    any_db: StagingDB, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    path = write_csv(inbox / "time_entries_1.csv", "time_entries", [])
    _append_rows(path, 0, 22, 0)
    src = AppendAfterListing(inbox, stable_seconds=0)
    first = ingest_dataset(any_db, src, "time_entries", workdir=tmp_path / "work")
    assert _landed_rows(any_db) == 0  # not the 22 rows there were at the listing
    assert any_db.scalar("SELECT COUNT(*) FROM loads") == 0  # nothing landed, nothing failed
    assert first.waiting == ["time_entries_1.csv"] and not first.results and not first.failures
    second = ingest_dataset(any_db, src, "time_entries", workdir=tmp_path / "work")
    assert [r.rows_read for r in second.results] == [60]
    assert not path.exists()


def test_local_default_waits_for_a_quiet_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from resources.settings import psa_source_resource

    monkeypatch.delenv("STAGEPOST_STABLE_SECONDS", raising=False)
    monkeypatch.setenv("STAGEPOST_SOURCE_KIND", "local")
    assert psa_source_resource().stable_seconds == 5
    assert PsaSource().stable_seconds == 5


def test_old_files_are_taken_without_waiting(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write_csv(inbox / "time_entries_1.csv", "time_entries", [te()])
    # ctime cannot be set back: let the file age past a short quiet period instead.
    src = LocalFolderSource(inbox, stable_seconds=0.5)
    time.sleep(0.6)
    started = time.monotonic()
    assert [f.name for f in src.list_complete()] == ["time_entries_1.csv"]
    assert time.monotonic() - started < 0.3  # no second listing needed


# -- scratch of killed landings ------------------------------------------------------------

_CHILD = """
import sys
from pathlib import Path
from connectors.sources.formats import FileFormat
from staging_models.db import StagingDB
from staging_models.landing import land_file
db = StagingDB(sys.argv[1])
land_file(db, Path(sys.argv[2]), "time_entries", fmt=FileFormat(encoding="cp1252"),
          workdir=Path(sys.argv[3]))
"""


def _cp1252_export(path: Path, rows: int) -> None:
    with open(path, "w", encoding="cp1252", newline="") as f:
        f.write(",".join(TIME_ENTRIES.layout) + "\r\n")
        block = "".join(_row(i).replace("Design review", "Révision") for i in range(rows))
        f.write(block)


def _scratch(work: Path) -> list[Path]:
    return sorted(work.glob(".load-*")) if work.exists() else []


def test_scratch_of_a_sigkilled_landing_is_removed_by_the_next(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    big = tmp_path / "time_entries_big.csv"
    _cp1252_export(big, 150_000)  # ~30 MB, transcoded into the scratch folder
    work = tmp_path / "work"
    url = str(duck_db.engine.url)
    duck_db.engine.dispose()  # the child writes the staging file
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, str(big), str(work)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None:
            copies = [p for d in _scratch(work) for p in d.iterdir()]
            if copies and copies[0].stat().st_size > 1 << 20:
                break
            time.sleep(0.005)
        assert child.poll() is None, "the child finished before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    (left,) = _scratch(work)  # what the issue saw: the transcoded copy stays behind
    assert any(p.name.endswith(".utf8.csv") for p in left.iterdir())

    # A live run's scratch is never touched, even while dead ones are removed.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with scratch_dir(work) as mine:
        src = LocalFolderSource(inbox, stable_seconds=0)
        result = ingest_dataset(duck_db, src, "time_entries", workdir=work)
        assert _scratch(work) == [mine]
        assert result.scratch_removed == [left.name]
    assert _scratch(work) == []


def test_scratch_of_a_live_process_is_kept_until_it_dies(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = work / f".load-{owner_tag(sleeper.pid)}~abcd1234"
        theirs.mkdir()
        (theirs / "copy.utf8.csv").write_text("x")
        assert clean_dead_scratch(work) == [] and theirs.exists()
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
    assert clean_dead_scratch(work) == [theirs.name] and not theirs.exists()
    unknown = work / ".load-abc123"  # a name no version wrote: left alone
    unknown.mkdir()
    assert clean_dead_scratch(work) == [] and unknown.exists()
    # Left by a version that did not record its owner: removed once a day old, not before.
    legacy, fresh = work / ".load-k2j4_x9q", work / ".load-p0o9i8u7"
    legacy.mkdir()
    fresh.mkdir()
    day_ago = time.time() - 25 * 3600
    os.utime(legacy, (day_ago, day_ago))
    assert clean_dead_scratch(work) == [legacy.name] and fresh.exists()


# -- symbolic links --------------------------------------------------------------------------


def test_symlink_in_the_inbox_is_named_in_the_run_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path / "data"))
    inbox = tmp_path / "inbox"
    target = write_csv(tmp_path / "elsewhere.csv", "time_entries", [te(entry_id="L")])
    write_csv(inbox / "time_entries_1.csv", "time_entries", [te()])
    (inbox / "time_entries_link.csv").symlink_to(target)
    result = materialize(
        [a for a in landing_assets if a.key.to_user_string() == landed_asset_key("time_entries")],
        resources={
            "staging": StagingDatabase(url=f"duckdb:///{tmp_path / 'staging.duckdb'}"),
            "psa_source": PsaSource(inbox=str(inbox), stable_seconds=0),
        },
    )
    (m,) = result.asset_materializations_for_node(landed_asset_key("time_entries"))
    assert m.metadata["files"].value == ["time_entries_1.csv"]
    skipped = m.metadata["skipped"].value
    assert list(skipped) == ["time_entries_link.csv"]
    assert "symbolic link" in skipped["time_entries_link.csv"]
    assert (inbox / "time_entries_link.csv").is_symlink()  # left alone


def test_symlink_in_an_sftp_inbox_is_reported(
    sftp_server: SftpServer, duck_db: StagingDB, tmp_path: Path
) -> None:
    target = write_csv(sftp_server.root / "elsewhere.csv", "time_entries", [te(entry_id="L")])
    (sftp_server.inbox / "time_entries_link.csv").symlink_to(target)
    with sftp_server.source() as src:
        report = ingest_dataset(duck_db, src, "time_entries", workdir=tmp_path / "work")
    assert not report.results and "symbolic link" in report.skipped["time_entries_link.csv"]


def test_rows_written_after_archiving_are_landed_not_lost(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """The issue's loss: the writer pauses, the run lands the rows so far and archives the
    file, the writer goes on appending to the file it still has open (now in the archive).
    The next pass notices the archived file grew and lands it whole."""
    inbox = tmp_path / "inbox"
    path = write_csv(inbox / "time_entries_1.csv", "time_entries", [])
    paused, resume = threading.Event(), threading.Event()

    def writer() -> None:
        with open(path, "a", encoding="utf-8") as f:
            for i in range(60):
                if i == 22:
                    paused.set()
                    resume.wait(30)
                f.write(_row(i))
                f.flush()

    t = threading.Thread(target=writer)
    t.start()
    assert paused.wait(30)
    src = LocalFolderSource(inbox, stable_seconds=0)  # the old local default
    first = ingest_dataset(any_db, src, "time_entries", workdir=tmp_path / "work")
    assert [r.rows_read for r in first.results] == [22]
    assert (inbox / "archive" / "time_entries_1.csv").exists()
    resume.set()
    t.join()
    time.sleep(0.05)

    second = ingest_dataset(any_db, src, "time_entries", workdir=tmp_path / "work")
    assert any_db.scalar("SELECT COUNT(DISTINCT entry_id) FROM land_time_entries") == 60
    assert second.restored == ["time_entries_1.csv"]
    assert [(r.rows_read, r.rows_new_version) for r in second.results] == [(60, 38)]
    assert not path.exists() and (inbox / "archive" / "time_entries_1.csv").exists()
    third = ingest_dataset(any_db, src, "time_entries", workdir=tmp_path / "work")
    assert not third.restored and not third.results  # settled


def test_sftp_file_changed_after_download_is_not_landed(
    sftp_server: SftpServer, duck_db: StagingDB, tmp_path: Path
) -> None:
    """Downloaded whole, then the PSA appends on the server before the load commits: the
    load is rolled back and the file lands whole at the next pass."""
    from connectors.sources.sftp import SftpSource

    path = write_csv(sftp_server.inbox / "time_entries_1.csv", "time_entries", [])
    _append_rows(path, 0, 22, 0)

    class AppendAfterDownload(SftpSource):
        def fetch(self, file: RemoteFile, dest_dir: Path) -> Path:
            local = super().fetch(file, dest_dir)
            if not getattr(self, "appended", False):
                self.appended = True
                _append_rows(path, 22, 60, 0)
            return local

    with AppendAfterDownload(**sftp_server.source_kwargs()) as src:
        first = ingest_dataset(duck_db, src, "time_entries", workdir=tmp_path / "work")
        assert _landed_rows(duck_db) == 0
        assert first.waiting == ["time_entries_1.csv"] and not first.results
        second = ingest_dataset(duck_db, src, "time_entries", workdir=tmp_path / "work")
    assert [r.rows_read for r in second.results] == [60]
    assert (sftp_server.archive / "time_entries_1.csv").exists()
