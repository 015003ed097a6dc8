"""Spreadsheet and gzip bombs, row and cell limits, and validation that recovers (issue 20.3).

The bombs are built here: small on disk, tens of MiB once inflated. Each is refused
before openpyxl or DuckDB reads it, with memory far below what it inflates to, and the
message names the limit and the setting that raises it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connectors.sources.formats import FileFormat, FileLimits
from connectors.sources.local import LocalFolderSource
from staging_models.db import StagingDB
from staging_models.landing import LandingError, ingest_dataset, land_file
from staging_models.validation import conservation, validate_all
from tests.support.csvtools import te, write_csv
from tests.support.hostile import (
    MIB,
    gzip_of,
    repeated,
    rich_runs,
    te_values,
    text_cell,
    write_xlsx,
    xlsx_with_cell,
)
from tests.support.memtools import peak_memory
from tests.support.staging_helpers import NOW, World

BOMB = 64 * MIB  # inflated size of each bomb; the zip/gzip on disk is ~64 KiB


def _landed(db: StagingDB) -> int:
    return db.scalar("SELECT COUNT(*) FROM land_time_entries")


def _refused(db: StagingDB, path: Path, fmt: FileFormat | None = None) -> str:
    with pytest.raises(LandingError) as e:
        land_file(db, path, "time_entries", fmt=fmt)
    assert _landed(db) == 0
    assert db.scalar("SELECT status FROM loads WHERE file_name = :f", {"f": path.name}) == "refused"
    return str(e.value)


def test_xlsx_whose_cell_inflates_hugely_is_refused_unread(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    """Before: this 70 KB workbook landed a 64 MiB description and grew RSS ~8x the cell
    (128 MiB: +1 GB), so the issue's 1 GiB cell passed 4 GiB."""
    path = xlsx_with_cell(tmp_path / "time_entries_bomb.xlsx", rich_runs(BOMB // MIB))
    assert path.stat().st_size < MIB
    with peak_memory() as peak:
        message = _refused(duck_db, path)
    assert message == (
        "time_entries_bomb.xlsx: refused: xl/worksheets/sheet1.xml inflates more than 100 times its "
        "compressed size (STAGEPOST_MAX_COMPRESSION_RATIO=100); a compression bomb?"
    )
    assert peak.rss_growth < BOMB // 4, f"peak RSS grew {peak.rss_growth >> 20} MiB"


def test_xlsx_sheet_xml_bomb_is_refused(duck_db: StagingDB, tmp_path: Path) -> None:
    from tests.support.hostile import rewrite_member

    path = write_xlsx(tmp_path / "time_entries_sheet.xlsx", [te_values()])
    sheet = [b'<?xml version="1.0"?><worksheet><sheetData>', *repeated(b" ", BOMB), b"</sheetData>"]
    rewrite_member(path, "xl/worksheets/sheet1.xml", sheet + [b"</worksheet>"])
    assert "xl/worksheets/sheet1.xml inflates more than 100 times" in _refused(duck_db, path)


def test_uncompressed_size_limit_is_checked_before_reading(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    path = xlsx_with_cell(
        tmp_path / "time_entries_big.xlsx", text_cell(os.urandom(MIB).hex().encode())
    )
    fmt = FileFormat(limits=FileLimits(max_uncompressed_bytes=MIB))
    assert _refused(duck_db, path, fmt) == (
        "time_entries_big.xlsx: refused: xl/worksheets/sheet1.xml inflates to more than "
        "1,048,576 bytes (STAGEPOST_MAX_UNCOMPRESSED_BYTES=1048576)"
    )


def test_a_cell_over_the_cell_limit_is_refused(duck_db: StagingDB, tmp_path: Path) -> None:
    # Under the ratio floor: the XML scan finds the long text run before openpyxl loads it.
    path = xlsx_with_cell(tmp_path / "time_entries_cell.xlsx", text_cell(b"x" * 70_000))
    assert _refused(duck_db, path) == (
        "time_entries_cell.xlsx: refused: xl/worksheets/sheet1.xml holds a value longer than "
        "65,536 bytes (STAGEPOST_MAX_CELL_BYTES=65536)"
    )
    # Runs each under the limit, one cell over it: refused by its row while reading.
    path = xlsx_with_cell(tmp_path / "time_entries_runs.xlsx", rich_runs(3, 40_000))
    assert _refused(duck_db, path) == (
        "time_entries_runs.xlsx: refused: row 3 holds a value longer than 65,536 bytes "
        "(STAGEPOST_MAX_CELL_BYTES=65536)"
    )
    # A CSV cell over the limit is named by the line the file counts.
    rows = [te(), te(entry_id="TE2", description="y" * 70_000)]
    csv_path = write_csv(tmp_path / "time_entries_cell.csv", "time_entries", rows)
    assert _refused(duck_db, csv_path) == (
        "time_entries_cell.csv: refused: line 3 holds a value longer than 65,536 bytes "
        "(STAGEPOST_MAX_CELL_BYTES=65536)"
    )


def test_gzip_bomb_is_refused_while_inflating(duck_db: StagingDB, tmp_path: Path) -> None:
    header = (",".join(te_values()) + "\n").encode()
    path = gzip_of(tmp_path / "time_entries_bomb.csv.gz", [header, *repeated(b",", BOMB)])
    with peak_memory() as peak:
        message = _refused(duck_db, path)
    assert message == (
        "time_entries_bomb.csv.gz: refused: the gzip stream inflates more than 100 times its "
        "compressed size (STAGEPOST_MAX_COMPRESSION_RATIO=100); a compression bomb?"
    )
    assert peak.rss_growth < BOMB // 4


@pytest.mark.parametrize("kind", ["xlsx", "csv", "csv.gz"])
def test_many_rows_over_a_lowered_cap_are_refused(
    duck_db: StagingDB, tmp_path: Path, kind: str
) -> None:
    rows = [te_values(entry_id=f"TE{i}") for i in range(60)]
    path = tmp_path / f"time_entries_rows.{kind}"
    if kind == "xlsx":
        write_xlsx(path, rows)
    else:
        text = "\n".join(",".join(r) for r in [list(te()), *rows]) + "\n"
        if kind == "csv":
            path.write_text(text)
        else:
            gzip_of(path, [text.encode()])
    fmt = FileFormat(limits=FileLimits(max_rows=50))
    assert _refused(duck_db, path, fmt) == (
        f"time_entries_rows.{kind}: refused: more than 50 rows (STAGEPOST_MAX_FILE_ROWS=50); "
        "split the export or raise the limit"
    )
    ok = land_file(duck_db, path, "time_entries", fmt=FileFormat(limits=FileLimits(max_rows=60)))
    assert ok.rows_read == 60


def test_a_bomb_does_not_stop_the_files_after_it(duck_db: StagingDB, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    xlsx_with_cell(inbox / "time_entries_1_bomb.xlsx", rich_runs(BOMB // MIB))
    write_csv(inbox / "time_entries_2.csv", "time_entries", [te()])
    report = ingest_dataset(
        duck_db,
        LocalFolderSource(inbox, None, stable_seconds=0),
        "time_entries",
        workdir=tmp_path / "work",
    )
    assert [f.file_name for f in report.refused] == ["time_entries_1_bomb.xlsx"]
    assert "STAGEPOST_MAX_COMPRESSION_RATIO" in (report.refused[0].message or "")
    assert (inbox / "rejected" / "time_entries_1_bomb.xlsx").exists()  # set aside, not retried
    assert [r.file_name for r in report.results] == ["time_entries_2.csv"]
    assert _landed(duck_db) == 1


def test_settings_set_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from resources.settings import psa_source_resource

    assert psa_source_resource().file_format().limits == FileLimits()
    for name, value in {
        "STAGEPOST_MAX_FILE_ROWS": "10",
        "STAGEPOST_MAX_CELL_BYTES": "20",
        "STAGEPOST_MAX_UNCOMPRESSED_BYTES": "30",
        "STAGEPOST_MAX_COMPRESSION_RATIO": "40.5",
    }.items():
        monkeypatch.setenv(name, value)
    assert psa_source_resource().file_format().limits == FileLimits(10, 20, 30, 40.5)


def test_validation_that_ran_out_of_memory_recovers_in_parts(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    """What kept validation failing after the big file was removed: its rows had landed and
    stayed pending, and every run validated them all in one transaction, ran out of memory
    and rolled back whole. In parts, each part fits and commits, so the next run finishes."""
    # 30,000: at 20,000 the one-pass peak sat right at the 40 MB cap, and whether it failed
    # depended on what had run before in the process.
    n = 30_000
    rows = [te(entry_id=f"TE{i}", employee_id=f"E{i % 50}") for i in range(n)]
    land_file(
        duck_db, write_csv(tmp_path / "time_entries_1.csv", "time_entries", rows), "time_entries"
    )
    with (
        duck_db.engine.connect() as c
    ):  # the whole database instance: what a 1 GB cap is to 3M rows
        c.exec_driver_sql("SET memory_limit = '40MB'")
        c.exec_driver_sql("SET threads = 1")
    with pytest.raises(Exception, match="Out of Memory"):
        validate_all(duck_db, datasets=("time_entries",), batch_rows=n)
    assert duck_db.scalar("SELECT COUNT(*) FROM stg_time_entries WHERE state = 'pending'") == n
    result = validate_all(duck_db, datasets=("time_entries",), batch_rows=n // 5)
    assert result["time_entries"].checked == n
    assert result["time_entries"].quarantined == n  # no master data: every entry breaks rules
    assert duck_db.scalar("SELECT COUNT(*) FROM stg_time_entries WHERE state = 'pending'") == 0
    cons = conservation(duck_db, datasets=("time_entries",))
    assert cons["ok"].all(), cons.to_dict("records")


def test_validation_in_parts_judges_like_one_pass(tmp_path: Path) -> None:
    results = []
    for batch in (10**9, 3):
        db = StagingDB(f"duckdb:///{tmp_path / f'staging_{batch}.duckdb'}")
        db.init_schema()
        world = World(db, tmp_path / f"files_{batch}").master()
        world.land(
            "time_entries",
            [
                te(entry_id=f"TE{i}", hours=h, project_code=p, work_date=f"2026-11-{2 + i:02d}")
                for i, (h, p) in enumerate(
                    [("7.5", "P1"), ("30", "P1"), ("8", "PX"), ("2", "P2"), ("-1", "P1")] * 3
                )
            ]
            # A key the file contradicts itself about: each part finds it among its own keys.
            + [te(entry_id="TE4", hours="3", project_code="P1", work_date="2026-11-06")]
            # One employee's day over 24 hours, its entries in different parts: each part sums
            # the whole day, not only its own candidates.
            + [
                te(entry_id=f"TE9{i}", hours=h, project_code="P1", work_date="2026-11-20")
                for i, h in enumerate(("16", "10"))
            ],
        )
        validate_all(db, now=NOW, batch_rows=batch)
        results.append(
            db.query_df(
                "SELECT row_key, version, state FROM stg_time_entries ORDER BY row_key"
            ).to_dict("records")
            + db.query_df(
                "SELECT row_key, rule_codes, status FROM quarantine ORDER BY row_key"
            ).to_dict("records")
        )
        db.engine.dispose()
    assert results[0] == results[1]
    for code in ("TE_DUPLICATE_CONFLICT", "TE_DAY_OVER_24"):
        assert any(code in (r.get("rule_codes") or "") for r in results[0]), code
    states = {r["state"] for r in results[0] if "state" in r}
    assert {"valid", "quarantined"} <= states
