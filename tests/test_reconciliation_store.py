"""Storing reconciliation results in staging: the IO manager's frames and the Arrow lines."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from dagster import AssetKey, build_input_context, build_output_context

from io_managers.staging_table import StagingTableIOManager, load_frame, store_frame, table_name
from reconciliation.compare import LINE_SCHEMA
from reconciliation.store import load_lines, store_lines
from resources.staging import StagingDatabase
from staging_models.db import StagingDB


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["a", None, "c'quote"],
            "entries": [1, 2, 3],
            "hours": [Decimal("1.2345"), None, Decimal("-0.5000")],
            "amount": [Decimal("10.00"), Decimal("0.01"), None],
            "value": [0.25, float("nan"), 1.0],
            "day": [date(2026, 11, 1), None, date(2026, 11, 3)],
            "ok": [True, False, True],
            "at": pd.to_datetime(["2026-11-20T12:00:00Z", None, "2026-11-21T00:00:00Z"]),
        }
    )


def test_frames_round_trip_exactly(any_db: StagingDB) -> None:
    store_frame(any_db, "rec_test", _frame())
    back = load_frame(any_db, "rec_test")
    assert list(back.columns) == list(_frame().columns)
    assert back["hours"].tolist() == [Decimal("1.2345"), None, Decimal("-0.5000")]
    assert back["amount"].tolist() == [Decimal("10.00"), Decimal("0.01"), None]
    assert back["name"].tolist() == ["a", None, "c'quote"]
    assert back["entries"].tolist() == [1, 2, 3]
    assert back["day"].tolist()[0] == date(2026, 11, 1)
    assert back["ok"].tolist() == [True, False, True]
    assert back["value"].iloc[0] == 0.25 and pd.isna(back["value"].iloc[1])
    assert pd.Timestamp(back["at"].iloc[0]) == pd.Timestamp("2026-11-20T12:00:00Z")
    # A second store replaces the rows; a wider decimal recreates the table, never rounds.
    wider = _frame().assign(hours=[Decimal("1.234567"), None, None])
    store_frame(any_db, "rec_test", wider)
    back = load_frame(any_db, "rec_test")
    assert len(back) == 3 and back["hours"].iloc[0] == Decimal("1.234567")


def test_empty_text_stays_empty_and_missing_values_are_null(any_db: StagingDB) -> None:
    """The bulk insert (one Arrow insert; COPY on PostgreSQL) tells '' from NULL, and a
    float NaN is NULL as before."""
    frame = pd.DataFrame({"text": ["", None, "x"], "value": [float("nan"), 1.5, None]})
    store_frame(any_db, "rec_nulls", frame)
    nulls = any_db.scalar("SELECT COUNT(*) FROM rec_nulls WHERE text IS NULL")
    empties = any_db.scalar("SELECT COUNT(*) FROM rec_nulls WHERE text = ''")
    missing = any_db.scalar("SELECT COUNT(*) FROM rec_nulls WHERE value IS NULL")
    assert (nulls, empties, missing) == (1, 1, 2)


def test_empty_frame_and_bad_columns(duck_db: StagingDB) -> None:
    store_frame(duck_db, "rec_empty", pd.DataFrame({"a": pd.Series([], dtype=object)}))
    assert load_frame(duck_db, "rec_empty").empty
    with pytest.raises(TypeError, match="mixed"):
        store_frame(duck_db, "rec_bad", pd.DataFrame({"a": ["x", 1]}))
    with pytest.raises(ValueError, match="safe SQL identifier"):
        store_frame(duck_db, "rec_bad", pd.DataFrame({"a; DROP TABLE x": [1]}))
    with pytest.raises(FileNotFoundError, match="materialize"):
        load_frame(duck_db, "rec_never")
    with pytest.raises(ValueError, match="safe table name"):
        table_name(["Robert'); DROP"])


def test_io_manager_names_tables_after_assets(tmp_path: Path) -> None:
    staging = StagingDatabase(url=f"duckdb:///{tmp_path / 's.duckdb'}")
    io = StagingTableIOManager(staging=staging)
    frame = pd.DataFrame({"k": ["x"], "v": [Decimal("1.50")]})
    io.handle_output(build_output_context(asset_key=AssetKey("rec_kpis")), frame)
    assert staging.get_db().scalar("SELECT v FROM rec_kpis") == Decimal("1.50")
    back = io.load_input(build_input_context(asset_key=AssetKey("rec_kpis")))
    pd.testing.assert_frame_equal(back, frame)


def test_lines_round_trip(any_db: StagingDB) -> None:
    row = {f.name: None for f in LINE_SCHEMA}
    row.update(
        entry_id="E1",
        **{"class": "value_mismatch"},
        legal_entity="US01",
        work_date=date(2026, 11, 2),
        psa_hours=Decimal("7.5000"),
        psa_amount=Decimal("1125.00"),
        erp_lines=1,
        approved_at=datetime(2026, 11, 3, 8, 0, tzinfo=UTC),
        description='=HYPERLINK("x","y"), "quoted"\nnew line',
    )
    other = dict(row, entry_id="E2", legal_entity="DE01", description=None)
    table = pa.Table.from_pylist([row, other], schema=LINE_SCHEMA)
    assert store_lines(any_db, table, "run-1") == 2
    assert load_lines(any_db).equals(table)
    assert load_lines(any_db, "DE01").column("entry_id").to_pylist() == ["E2"]
    assert store_lines(any_db, table.slice(0, 0), "run-2") == 0
    assert load_lines(any_db).num_rows == 0


def test_lines_table_of_an_older_layout_is_replaced(any_db: StagingDB) -> None:
    """`rec_lines` written before the keyless class had no file and row columns: it holds
    only the latest reconciliation, so it is created anew rather than failing the insert."""
    with any_db.begin() as c:
        c.exec_driver_sql("CREATE TABLE rec_lines (rec_id TEXT NOT NULL, entry_id TEXT)")
        c.exec_driver_sql("INSERT INTO rec_lines VALUES ('old-run', 'OLD')")
    assert load_lines(any_db).num_rows == 0  # the old table is gone, its rows with it
    row = {f.name: None for f in LINE_SCHEMA}
    row.update(
        **{"class": "quarantined_without_key"},
        source_file="time_entries_001.csv",
        row_no=22,
        psa_hours=Decimal("1.2500"),
    )
    table = pa.Table.from_pylist([row], schema=LINE_SCHEMA)
    assert store_lines(any_db, table, "run-1") == 1
    back = load_lines(any_db).to_pylist()[0]
    assert (back["entry_id"], back["source_file"], back["row_no"]) == (
        None,
        "time_entries_001.csv",
        22,
    )
