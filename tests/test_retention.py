"""Retention: landed raw rows of settled loads go, conservation still holds; old files go."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from staging_models.db import StagingDB
from staging_models.retention import purge_files, purge_landing
from staging_models.validation import conservation
from tests.support.staging_helpers import NOW, PROJECTS, World, entry

LATER = datetime.now(UTC) + timedelta(days=1)  # every load of the test is a day old by then


def _land_rows(db: StagingDB, load_id: str) -> int:
    return db.scalar("SELECT COUNT(*) FROM land_time_entries WHERE load_id = :l", {"l": load_id})


def _te_loads(db: StagingDB) -> list[str]:
    df = db.query_df(
        "SELECT load_id FROM loads WHERE dataset = 'time_entries' ORDER BY started_at, load_id"
    )
    return df["load_id"].tolist()


def test_purge_keeps_unsettled_loads_and_conservation(any_db: StagingDB, tmp_path: Path) -> None:
    w = World(any_db, tmp_path).master()
    # Load 1: A valid, B quarantined (closed project P2): B still needs its raw row.
    w.land("time_entries", [entry(entry_id="A"), entry(entry_id="B", project_code="P2")])
    # Load 2: A corrected (v2), C valid: every row settled.
    w.land("time_entries", [entry(entry_id="A", hours="6.00"), entry(entry_id="C")])
    w.validate()
    assert w.state("B") == "quarantined" and w.state("A") == "valid"
    first, second = _te_loads(any_db)
    before = conservation(any_db).set_index("dataset")
    assert before["ok"].all()

    dry = purge_landing(any_db, 0.5, now=LATER, dry_run=True)
    assert dry.loads["time_entries"] == 1 and dry.rows["time_entries"] == 2
    assert _land_rows(any_db, second) == 2  # a dry run deletes nothing

    done = purge_landing(any_db, 0.5, now=LATER)
    assert done.loads == {**done.loads, "time_entries": 1, "employees": 1, "projects": 1}
    assert _land_rows(any_db, first) == 2 and _land_rows(any_db, second) == 0
    assert any_db.scalar("SELECT COUNT(*) FROM land_projects") == 0
    after = conservation(any_db).set_index("dataset")
    assert after["ok"].all(), after[["rows_read", "rows_landed", "landing_ok"]]
    assert (after["rows_landed"] == before["rows_landed"]).all()

    # Nothing newer than the age goes, and a second run finds nothing left to purge.
    assert purge_landing(any_db, 30, now=LATER).loads["time_entries"] == 0
    assert sum(purge_landing(any_db, 0.5, now=LATER).loads.values()) == 0

    # Validation still works on top: B's project reopened releases B from the kept load.
    reopened = [dict(p) for p in PROJECTS]
    for p in reopened:
        if p["project_code"] == "P2":
            p.update(status="open", updated_at="2026-11-10T00:00:00Z")
    w.land("projects", reopened)
    w.land("time_entries", [entry(entry_id="D", work_date="2026-11-01")])
    w.validate(NOW)
    assert w.state("D") == "valid", w.codes("D")
    assert w.state("B") == "valid", w.codes("B")
    assert conservation(any_db)["ok"].all()
    # Now B's load is settled too and goes.
    assert purge_landing(any_db, 0.5, now=LATER + timedelta(days=1)).loads["time_entries"] == 2
    assert conservation(any_db)["ok"].all()


def test_latest_full_export_and_newer_are_kept(duck_db: StagingDB, tmp_path: Path) -> None:
    w = World(duck_db, tmp_path).master()
    w.land("time_entries", [entry(entry_id="A")])
    w.land("time_entries", [entry(entry_id="B")])
    w.validate()
    first, second = _te_loads(duck_db)
    started = duck_db.scalar("SELECT started_at FROM loads WHERE load_id = :l", {"l": second})
    done = purge_landing(duck_db, 0.5, now=LATER, keep_time_entries_from=started)
    assert done.loads["time_entries"] == 1
    assert _land_rows(duck_db, first) == 0 and _land_rows(duck_db, second) == 1
    assert conservation(duck_db)["ok"].all()


def test_purge_files_by_age(tmp_path: Path) -> None:
    old, new, other = tmp_path / "old.xlsx", tmp_path / "new.xlsx", tmp_path / "old.txt"
    for p in (old, new, other):
        p.write_bytes(b"x")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))
    os.utime(other, (ten_days_ago, ten_days_ago))
    assert purge_files(tmp_path, 7, dry_run=True) == [old] and old.exists()
    assert purge_files(tmp_path, 7) == [old]
    assert not old.exists() and new.exists() and other.exists()
    assert purge_files(tmp_path / "missing", 7) == []


def test_retention_and_backup_commands(
    duck_db: StagingDB, tmp_path: Path, monkeypatch, capsys
) -> None:
    from commands.ops import backup_main, retention_main

    w = World(duck_db, tmp_path / "in").master()
    w.land("time_entries", [entry(entry_id="A")])
    w.validate()
    duck_db.engine.dispose()
    for name in list(os.environ):
        if name.startswith(("STAGEPOST_", "DAGSTER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STAGEPOST_STAGING_URL", duck_db.url)
    monkeypatch.setenv("STAGEPOST_RETENTION_LANDING_DAYS", "0.00001")
    time.sleep(1.5)
    assert retention_main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "workbooks: kept (STAGEPOST_RETENTION_REPORT_DAYS not set)" in out
    assert "time_entries: would delete 1 rows of 1 loads" in out and "conservation: ok" in out
    assert "API pulls: kept (STAGEPOST_RETENTION_API_PULL_DAYS not set)" in out
    assert duck_db.scalar("SELECT COUNT(*) FROM land_time_entries") == 1
    # API pull files: the landed windows' Parquet files, by age, per vendor folder.
    pulls = tmp_path / "data" / "api_pulls" / "harvest"
    pulls.mkdir(parents=True)
    old, new, partial = (pulls / n for n in ("a.parquet", "b.parquet", "c.parquet.part"))
    for f in (old, new, partial):
        f.write_bytes(b"x")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))
    os.utime(partial, (ten_days_ago, ten_days_ago))
    monkeypatch.setenv("STAGEPOST_RETENTION_API_PULL_DAYS", "7")
    assert retention_main(["--dry-run"]) == 0
    assert (
        f"API pulls: would delete 1 files older than 7 days in {pulls}" in capsys.readouterr().out
    )
    assert old.exists()
    assert retention_main([]) == 0
    assert f"API pulls: deleted 1 files older than 7 days in {pulls}" in capsys.readouterr().out
    assert not old.exists() and new.exists() and partial.exists()
    duck_db.engine.dispose()
    assert backup_main([str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.startswith(f"staging: {tmp_path / 'b'}/staging-")
