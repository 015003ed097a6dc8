"""solidtime's organisation export dropped as the ZIP it is: unpacked safely into the inbox
(declared members only, by base name; size and ratio limits), organizations.csv giving the
currency, then every member landing like a dropped file; unsafe or oversized archives refused
and set aside with their reason."""

from __future__ import annotations

import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.sources.archive import unpack
from connectors.sources.limits import FileFormatError, FileLimits
from connectors.sources.mapping import load_mapping
from resources.psa_source import PsaSource
from staging_models.db import StagingDB
from staging_models.landing import ingest_dataset
from staging_models.validation import conservation, validate_all

DATA = Path(__file__).parent / "data" / "vendors" / "solidtime"
ZIP_NAME = "export_acme_2026-11-30_0f3c.zip"
ORGS = "id,name,currency,billable_rate\norg-1,Acme GmbH,EUR,\n"
MEMBERS = ("time_entries.csv", "members.csv", "projects.csv", "tasks.csv")
SPEC = load_mapping("solidtime").archive


def _zip(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return path


def _export(folder: Path, **extra: str) -> Path:
    members: dict[str, bytes | str] = {m: (DATA / m).read_bytes() for m in MEMBERS}
    members["organizations.csv"] = ORGS
    members["clients.csv"] = "id,name\nc-acme,Acme\n"  # not declared: not unpacked
    members.update(extra)
    folder.mkdir(parents=True, exist_ok=True)
    return _zip(folder / ZIP_NAME, members)


def _ingest(db: StagingDB, tmp_path: Path, dataset: str, **settings):
    psa = PsaSource(
        inbox=str(tmp_path / "inbox"),
        mapping_file="solidtime",
        stable_seconds=0,
        default_legal_entity="DE01",
        source_timezone="Europe/Berlin",
        **settings,
    )
    with psa.open() as source:
        return ingest_dataset(db, source, dataset, fmt=psa.file_format(), workdir=tmp_path / "work")


def test_a_dropped_zip_lands_every_member_with_the_organisations_currency(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """No STAGEPOST_DEFAULT_CURRENCY: EUR comes from organizations.csv. The time entries land
    in the run that unpacks the ZIP; members, projects and tasks in their datasets' runs."""
    inbox = tmp_path / "inbox"
    _export(inbox)
    report = _ingest(any_db, tmp_path, "time_entries")
    assert not report.refused and not report.failures, report.refused or report.failures
    stem = "export_acme_2026-11-30_0f3c"
    assert report.unpacked == {ZIP_NAME: [f"solidtime_{m[:-4]}_{stem}.csv" for m in MEMBERS]}
    assert [(r.file_name, r.rows_read) for r in report.results] == [
        (f"solidtime_time_entries_{stem}.csv", 4)
    ]
    assert (inbox / "archive" / ZIP_NAME).exists() and not (inbox / ZIP_NAME).exists()
    for dataset, rows in (("employees", 2), ("projects", 2), ("project_tasks", 1)):
        r = _ingest(any_db, tmp_path, dataset)
        assert [x.rows_read for x in r.results] == [rows], dataset
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == []  # all archived
    validate_all(any_db, actor="test")
    currencies = any_db.query_df(
        "SELECT DISTINCT currency FROM stg_time_entries UNION "
        "SELECT DISTINCT currency FROM stg_projects"
    )["currency"].tolist()
    assert currencies == ["EUR"]
    states = dict(
        any_db.query_df(
            "SELECT state, count(*) AS n FROM stg_time_entries WHERE is_current GROUP BY state"
        ).values
    )
    assert states == {"valid": 3, "quarantined": 1}  # the running entry (TE_HOURS_MISSING)
    total = any_db.scalar("SELECT SUM(amount) FROM validated_time_entries")
    assert Decimal(total) == Decimal("268.64")  # as the unpacked CSV files land by hand
    assert conservation(any_db)["ok"].all()


def test_the_same_zip_again_lands_nothing_twice(duck_db: StagingDB, tmp_path: Path) -> None:
    """Re-dropped (or unpacked again after a crash before it was archived): the members have
    the same bytes, so their loads are duplicates."""
    _export(tmp_path / "inbox")
    _ingest(duck_db, tmp_path, "time_entries")
    _export(tmp_path / "inbox")
    again = _ingest(duck_db, tmp_path, "time_entries")
    assert [r.status for r in again.results] == ["duplicate"]
    assert duck_db.scalar("SELECT count(*) FROM stg_time_entries") == 4


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ({"tasks.csv": None}, "the archive lacks tasks.csv"),
        ({"nested/time_entries.csv": "id\n"}, "time_entries.csv appears twice"),
    ],
)
def test_an_archive_that_cannot_be_unpacked_is_refused_with_its_reason(
    duck_db: StagingDB, tmp_path: Path, members: dict, reason: str
) -> None:
    body = {m: (DATA / m).read_bytes() for m in MEMBERS}
    for name, value in members.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _zip(inbox / ZIP_NAME, body)
    report = _ingest(duck_db, tmp_path, "time_entries", default_currency="EUR")
    (refused,) = report.refused
    assert reason in refused.message and refused.message.startswith(ZIP_NAME)
    assert [p.parent.name for p in tmp_path.rglob(ZIP_NAME)] == ["rejected"]
    assert not report.results and not report.unpacked
    status = duck_db.scalar("SELECT status FROM loads WHERE file_name = :f", {"f": ZIP_NAME})
    assert status == "refused"


def test_member_paths_never_reach_the_disk(tmp_path: Path) -> None:
    """A member named `../../time_entries.csv` is read by its base name into the work folder;
    nothing is written outside it; undeclared members are not unpacked."""
    body = {m: (DATA / m).read_bytes() for m in MEMBERS if m != "time_entries.csv"}
    body["../../time_entries.csv"] = (DATA / "time_entries.csv").read_bytes()
    body["../../../evil.sh"] = "rm -rf /\n"
    (tmp_path / "a").mkdir()
    archive = _zip(tmp_path / "a" / ZIP_NAME, body)
    work = tmp_path / "a" / "work"
    out = unpack(archive, SPEC, work, FileLimits())
    assert sorted(p.name for p in work.iterdir()) == sorted(MEMBERS)
    assert not list(tmp_path.rglob("evil.sh"))
    assert set(out.values()) == {work / m for m in MEMBERS}


def test_size_and_ratio_limits(tmp_path: Path) -> None:
    """A member that would inflate past STAGEPOST_MAX_UNCOMPRESSED_BYTES, or past the ratio
    limit (a compression bomb), is refused before it is inflated."""
    body: dict[str, bytes | str] = {m: (DATA / m).read_bytes() for m in MEMBERS}
    big = _zip(tmp_path / "big.zip", body)
    with pytest.raises(FileFormatError, match="STAGEPOST_MAX_UNCOMPRESSED_BYTES"):
        unpack(big, SPEC, tmp_path / "w1", FileLimits(max_uncompressed_bytes=200))
    body["time_entries.csv"] = b"id\n" + b"0" * (8 << 20)  # 8 MB of zeros: ratio ~1000
    bomb = _zip(tmp_path / "bomb.zip", body)
    with pytest.raises(FileFormatError, match="STAGEPOST_MAX_COMPRESSION_RATIO"):
        unpack(bomb, SPEC, tmp_path / "w2", FileLimits())
    assert not (tmp_path / "w2").exists()  # judged before anything was written


def test_a_source_that_cannot_unpack_refuses_the_zip_saying_what_to_do(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    """A remote inbox (SFTP) does not unpack: the ZIP is refused, naming the remedy, not left
    to fail as an unreadable time-entry file."""
    from connectors.sources.base import FileSource
    from connectors.sources.local import LocalFolderSource

    class RemoteLike(LocalFolderSource):
        put = FileSource.put

    inbox = tmp_path / "inbox"
    _export(inbox)
    psa = PsaSource(inbox=str(inbox), mapping_file="solidtime", stable_seconds=0)
    source = RemoteLike(inbox, stable_seconds=0)
    source.classify = psa.file_format().classify
    report = ingest_dataset(
        duck_db, source, "time_entries", fmt=psa.file_format(), workdir=tmp_path / "work"
    )
    (refused,) = report.refused
    assert "unpack it and drop its CSV files" in refused.message
    assert not report.results and duck_db.scalar("SELECT count(*) FROM land_time_entries") == 0
