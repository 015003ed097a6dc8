"""Landing and versioning, on DuckDB and on PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook

from connectors.sources.canonical import DATASETS
from connectors.sources.formats import FileFormatError
from staging_models.db import StagingDB
from staging_models.landing import LandingError, land_file
from tests.support.csvtools import te, write_csv


def _versions(db: StagingDB, key: str = "TE1"):
    return db.query_df(
        "SELECT version, is_current, hours, description, deleted FROM stg_time_entries "
        "WHERE row_key = :k ORDER BY version",
        {"k": key},
    )


def _table_counts(db: StagingDB) -> tuple[int, int, int]:
    return (
        db.scalar("SELECT COUNT(*) FROM loads"),
        db.scalar("SELECT COUNT(*) FROM land_time_entries"),
        db.scalar("SELECT COUNT(*) FROM stg_time_entries"),
    )


def test_same_file_twice_changes_nothing(any_db: StagingDB, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "time_entries_1.csv", "time_entries", [te(), te(entry_id="TE2")])
    first = land_file(any_db, f, "time_entries")
    assert (first.status, first.rows_read, first.rows_new_version) == ("landed", 2, 2)
    before = _table_counts(any_db)
    second = land_file(any_db, f, "time_entries")
    assert second.status == "duplicate" and second.load_id == first.load_id
    assert _table_counts(any_db) == before


def test_identical_reexport_of_a_row_is_a_noop(any_db: StagingDB, tmp_path: Path) -> None:
    land_file(
        any_db, write_csv(tmp_path / "time_entries_1.csv", "time_entries", [te()]), "time_entries"
    )
    # Same content, touched updated_at and a renamed employee: not a new version.
    again = write_csv(
        tmp_path / "time_entries_2.csv",
        "time_entries",
        [te(updated_at="2026-11-04T10:00:00Z", employee_name="Ann Lee-Smith"), te(entry_id="TE2")],
    )
    r = land_file(any_db, again, "time_entries")
    assert (r.rows_read, r.rows_new_version, r.rows_unchanged) == (2, 1, 1)
    assert list(_versions(any_db)["version"]) == [1]


def test_changed_entry_becomes_version_2_and_version_1_is_kept(
    any_db: StagingDB, tmp_path: Path
) -> None:
    land_file(
        any_db, write_csv(tmp_path / "time_entries_1.csv", "time_entries", [te()]), "time_entries"
    )
    changed = te(hours="6.25", updated_at="2026-11-05T08:00:00Z")
    land_file(
        any_db,
        write_csv(tmp_path / "time_entries_2.csv", "time_entries", [changed]),
        "time_entries",
    )
    v = _versions(any_db)
    assert list(v["version"]) == [1, 2]
    assert list(v["is_current"]) == [False, True]
    assert [Decimal(h) for h in v["hours"]] == [Decimal("7.5"), Decimal("6.25")]


def test_deleted_row_is_a_tombstone_version(any_db: StagingDB, tmp_path: Path) -> None:
    land_file(
        any_db, write_csv(tmp_path / "time_entries_1.csv", "time_entries", [te()]), "time_entries"
    )
    gone = te(deleted="true", updated_at="2026-11-06T08:00:00Z")
    land_file(
        any_db, write_csv(tmp_path / "time_entries_2.csv", "time_entries", [gone]), "time_entries"
    )
    v = _versions(any_db)
    assert list(v["deleted"]) == [False, True] and list(v["is_current"]) == [False, True]


def test_older_export_arriving_late_is_stale_not_a_version(
    any_db: StagingDB, tmp_path: Path
) -> None:
    newer = te(hours="8.00", updated_at="2026-11-05T08:00:00Z")
    older = te(hours="7.00", updated_at="2026-11-04T08:00:00Z")
    land_file(
        any_db,
        write_csv(tmp_path / "time_entries_new.csv", "time_entries", [newer]),
        "time_entries",
    )
    r = land_file(
        any_db,
        write_csv(tmp_path / "time_entries_old.csv", "time_entries", [older]),
        "time_entries",
    )
    assert (r.rows_read, r.rows_new_version, r.rows_stale) == (1, 0, 1)
    assert list(_versions(any_db)["hours"].map(Decimal)) == [Decimal("8")]


def test_every_row_read_is_in_the_loads_counts(any_db: StagingDB, tmp_path: Path) -> None:
    rows1 = [te(entry_id=f"TE{i}") for i in range(10)] + [te(entry_id="TE3")]  # repeated row
    rows2 = [
        te(entry_id=f"TE{i}", hours="1.00", updated_at="2026-11-09T00:00:00Z") for i in range(5)
    ]
    rows2 += [
        te(entry_id=f"TE{i}", updated_at="2026-11-01T00:00:00Z", hours="3.00") for i in range(5, 7)
    ]
    rows2 += [te(entry_id=""), te(entry_id="TE9")]  # no key; unchanged
    land_file(
        any_db, write_csv(tmp_path / "time_entries_1.csv", "time_entries", rows1), "time_entries"
    )
    land_file(
        any_db, write_csv(tmp_path / "time_entries_2.csv", "time_entries", rows2), "time_entries"
    )
    loads = any_db.query_df("SELECT * FROM loads ORDER BY started_at")
    assert list(loads["rows_read"]) == [11, 9]
    assert (loads["rows_new_version"] + loads["rows_unchanged"] + loads["rows_stale"]).tolist() == [
        11,
        9,
    ]
    assert loads["rows_read"].sum() == any_db.scalar("SELECT COUNT(*) FROM land_time_entries")
    assert loads["rows_new_version"].sum() == any_db.scalar("SELECT COUNT(*) FROM stg_time_entries")
    assert list(loads["rows_stale"]) == [0, 2]
    # The row without an entry_id is kept under a synthetic key for the quarantine, not dropped.
    assert any_db.scalar("SELECT COUNT(*) FROM stg_time_entries WHERE key_missing") == 1


def test_exact_decimals_survive_the_round_trip(any_db: StagingDB, tmp_path: Path) -> None:
    rows = [
        te(entry_id="A", hours="0.1", bill_rate="0.2"),
        te(entry_id="B", hours="0.2", bill_rate="1234567890.1234"),
        te(entry_id="C", hours="6.6667", bill_rate="99.99"),
        te(entry_id="D", hours="6.66675"),  # more decimals than hours keep: refused, not rounded
    ]
    land_file(
        any_db, write_csv(tmp_path / "time_entries_1.csv", "time_entries", rows), "time_entries"
    )
    df = any_db.query_df(
        "SELECT row_key, hours, bill_rate, type_errors FROM stg_time_entries ORDER BY row_key"
    )
    assert all(isinstance(h, Decimal) for h in df["hours"].dropna())
    got = dict(zip(df["row_key"], zip(df["hours"], df["bill_rate"], strict=True), strict=True))
    assert got["A"] == (Decimal("0.1"), Decimal("0.2"))
    assert got["A"][0] + got["B"][0] == Decimal("0.3")
    assert got["B"][1] == Decimal("1234567890.1234")
    assert got["C"] == (Decimal("6.6667"), Decimal("99.99"))
    d = df[df["row_key"] == "D"].iloc[0]
    assert d["hours"] is None and d["type_errors"] == "hours"
    raw = any_db.scalar("SELECT raw_hours FROM land_time_entries WHERE entry_id = 'D'")
    assert raw == "6.66675"


def test_bad_values_land_with_type_errors_and_raw_text(any_db: StagingDB, tmp_path: Path) -> None:
    rows = [
        te(
            work_date="2026-13-02",
            hours="abc",
            billable="maybe",
            approved_at="2026-11-03 09:00",  # no UTC offset
        )
    ]
    land_file(
        any_db, write_csv(tmp_path / "time_entries_1.csv", "time_entries", rows), "time_entries"
    )
    errs = any_db.scalar("SELECT type_errors FROM stg_time_entries")
    assert set(errs.split(",")) == {"work_date", "hours", "billable", "approved_at"}
    raw = any_db.query_df("SELECT raw_work_date, raw_hours, raw_approved_at FROM land_time_entries")
    assert raw.iloc[0].tolist() == ["2026-13-02", "abc", "2026-11-03 09:00"]


def test_timestamps_keep_their_instant_across_offsets(any_db: StagingDB, tmp_path: Path) -> None:
    rows = [
        te(entry_id="A", approved_at="2026-11-03T01:30:00+02:00"),
        te(entry_id="B", approved_at="2026-11-02T23:30:00Z"),
    ]
    land_file(
        any_db, write_csv(tmp_path / "time_entries_1.csv", "time_entries", rows), "time_entries"
    )
    a, b = any_db.query_df("SELECT approved_at FROM stg_time_entries ORDER BY row_key")[
        "approved_at"
    ]
    assert a == b


def _write_xlsx(path: Path, dataset: str, rows: list[dict[str, object]]) -> Path:
    wb = Workbook()
    ws = wb.active
    cols = DATASETS[dataset].column_names
    ws.append(list(cols))
    for r in rows:
        ws.append([r.get(c) for c in cols])
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"  # text that looks like a formula stays text
    wb.save(path)
    return path


def test_csv_and_xlsx_of_the_same_rows_stage_the_same_values(
    tmp_path: Path, any_db: StagingDB
) -> None:
    from datetime import date

    rows = [te(entry_id="A"), te(entry_id="B", hours="0.1", bill_rate="", description="=1+1")]
    write_csv(tmp_path / "csv" / "time_entries_1.csv", "time_entries", rows)
    # The same rows as a spreadsheet user saves them: numbers as numbers, dates as dates.
    xrows = []
    for r in rows:
        x: dict[str, object] = dict(r)
        x["hours"] = float(r["hours"])
        x["bill_rate"] = float(r["bill_rate"]) if r["bill_rate"] else None
        x["work_date"] = date.fromisoformat(r["work_date"])
        x["billable"] = True
        xrows.append(x)
    (tmp_path / "xlsx").mkdir()
    _write_xlsx(tmp_path / "xlsx" / "time_entries_1.xlsx", "time_entries", xrows)
    land_file(any_db, tmp_path / "csv" / "time_entries_1.csv", "time_entries")
    r = land_file(any_db, tmp_path / "xlsx" / "time_entries_1.xlsx", "time_entries")
    # Same content hash: the XLSX re-export is an identical re-export, not a new version.
    assert (r.rows_read, r.rows_new_version, r.rows_unchanged) == (2, 0, 2)
    df = any_db.query_df(
        "SELECT load_id, row_no, entry_id, work_date, hours, bill_rate, billable, description "
        "FROM land_time_entries ORDER BY load_id, row_no"
    )
    a, b = df.iloc[:2].drop(columns="load_id"), df.iloc[2:].drop(columns="load_id")
    assert a.reset_index(drop=True).equals(b.reset_index(drop=True))


def test_missing_required_column_is_refused_and_recorded(any_db: StagingDB, tmp_path: Path) -> None:
    f = tmp_path / "time_entries_bad.csv"
    f.write_text("entry_id,hours\nTE1,1\n")
    with pytest.raises(
        LandingError, match=r"time_entries_bad\.csv: missing column\(s\) employee_id"
    ):
        land_file(any_db, f, "time_entries")
    loads = any_db.query_df("SELECT status, message FROM loads")
    assert loads["status"].tolist() == ["refused"]  # the file itself: set aside, not retried
    assert any_db.scalar("SELECT COUNT(*) FROM land_time_entries") == 0


def test_malformed_csv_names_the_file(duck_db: StagingDB, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "time_entries_1.csv", "time_entries", [te()])
    with open(f, "a") as fh:
        fh.write("TE2,E1,only,three\n")
    with pytest.raises(LandingError, match="time_entries_1.csv"):
        land_file(duck_db, f, "time_entries")
    assert duck_db.scalar("SELECT COUNT(*) FROM land_time_entries") == 0


def test_master_data_versions_by_key_with_nullable_key_parts(
    any_db: StagingDB, tmp_path: Path
) -> None:
    rc = {
        "project_code": "P1",
        "employee_id": "",
        "role": "senior",
        "bill_rate": "180.00",
        "currency": "USD",
        "valid_from": "2026-01-01",
        "valid_to": "",
    }
    f1 = write_csv(tmp_path / "rate_cards_1.csv", "rate_cards", [rc, {**rc, "role": ""}])
    land_file(any_db, f1, "rate_cards")
    f2 = write_csv(tmp_path / "rate_cards_2.csv", "rate_cards", [{**rc, "bill_rate": "190.00"}])
    land_file(any_db, f2, "rate_cards")
    df = any_db.query_df(
        "SELECT row_key, version, is_current, key_missing FROM stg_rate_cards ORDER BY row_key, version"
    )
    assert df["key_missing"].tolist() == [False, False, False]
    by_key = df.groupby("row_key")["version"].apply(list).to_dict()
    assert by_key == {"P1||senior|2026-01-01": [1, 2], "P1|||2026-01-01": [1]}
    assert df["is_current"].sum() == 2


def test_unknown_file_type_is_refused(duck_db: StagingDB, tmp_path: Path) -> None:
    f = tmp_path / "time_entries_1.json"
    f.write_text("{}")
    with pytest.raises(LandingError) as e:
        land_file(duck_db, f, "time_entries")
    assert isinstance(e.value.__cause__, FileFormatError)
