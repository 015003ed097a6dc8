"""Reconciliation on PostgreSQL staging sends the lazy inputs only for the entries it needs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from reconciliation._inputs import KeyedInputs, duck_inputs, staging_inputs
from staging_models.db import StagingDB
from staging_models.validation import validate_all
from tests.support.recon_helpers import NOW, entry_row, land
from tests.support.staging_helpers import World


def test_lazy_inputs_travel_only_for_the_keyed_entries(pg_db: StagingDB, tmp_path: Path) -> None:
    """`r_psa_all`, `r_valid_all`, `r_ledger_all` are read for the exact-path entries only
    (`rc_k`): sent whole, they were most of what crossed from PostgreSQL, one COPY message
    per row. They arrive once `KeyedInputs.load` names the entries, and hold only theirs."""
    World(pg_db, tmp_path).master()
    rows = [entry_row(f"K{i}", i) for i in range(6)]
    land(pg_db, tmp_path, "time_entries_1.csv", "time_entries", rows)
    validate_all(pg_db, now=NOW, actor="test")
    keyed = KeyedInputs()
    inputs = staging_inputs(date(2026, 11, 1), date(2026, 11, 30), None)
    lazy = {i.name for i in inputs if i.lazy}
    assert lazy == {"r_psa_all", "r_valid_all", "r_ledger_all"}
    with duck_inputs(pg_db, inputs, {}, keyed) as duck:
        assert duck.sql("SELECT COUNT(*) FROM r_psa_in").fetchall() == [(6,)]
        for name in lazy:  # not sent yet
            with pytest.raises(duckdb.CatalogException):
                duck.sql(f"SELECT * FROM {name}")
        duck.execute(
            "CREATE TEMP TABLE keys AS SELECT * FROM (VALUES ('K2'), ('K4'), ('ZZ')) t(entry_id)"
        )
        keyed.load("keys")
        psa = duck.sql("SELECT entry_id FROM r_psa_all ORDER BY 1").fetchall()
        valid = duck.sql("SELECT entry_id FROM r_valid_all ORDER BY 1").fetchall()
        assert psa == valid == [("K2",), ("K4",)]
        assert duck.sql("SELECT COUNT(*) FROM r_ledger_all").fetchall() == [(0,)]


def test_inputs_are_read_side_by_side_on_their_own_connections(
    pg_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL runs a statement on one core: the period's inputs are read `PG_READERS` at a
    time, each on a connection of its own (with the reads' work_mem), and arrive whole."""
    import threading

    from reconciliation import _inputs

    World(pg_db, tmp_path).master()
    land(pg_db, tmp_path, "time_entries_1.csv", "time_entries", [entry_row("K1", 1)])
    validate_all(pg_db, now=NOW, actor="test")
    seen: list[tuple[int, int, str]] = []
    real = _inputs._pg_copy_arrow
    # The first reads meet here: they only can if they run at once, each holding its own
    # connection (a sequential reader would time out waiting for the second).
    together = threading.Barrier(_inputs.PG_READERS, timeout=30)

    def spy(conn, inp):
        raw = conn.connection.driver_connection
        work_mem = conn.exec_driver_sql("SHOW work_mem").scalar_one()
        seen.append((raw.info.backend_pid, threading.get_ident(), work_mem))
        if len(seen) <= _inputs.PG_READERS:
            together.wait()
        return real(conn, inp)

    monkeypatch.setattr(_inputs, "_pg_copy_arrow", spy)
    inputs = staging_inputs(date(2026, 11, 1), date(2026, 11, 30), None)
    with duck_inputs(pg_db, inputs, {}) as duck:
        assert duck.sql("SELECT COUNT(*) FROM r_valid_ledger").fetchall() == [(1,)]
        assert duck.sql("SELECT SUM(n) FROM r_cube").fetchall() == [(1,)]
    assert len(seen) == len(inputs)
    assert len({pid for pid, _, _ in seen}) == _inputs.PG_READERS
    assert len({thread for _, thread, _ in seen}) == _inputs.PG_READERS
    assert {wm for _, _, wm in seen} == {_inputs.PG_READ_WORK_MEM}


def test_keyed_inputs_are_read_side_by_side(
    pg_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lazy inputs travel `PG_READERS` at a time too, each connection with its own copy
    of the keys (a temporary table is its session's alone), with the keyed reads' settings."""
    import threading

    from reconciliation import _inputs

    World(pg_db, tmp_path).master()
    rows = [entry_row(f"K{i}", i) for i in range(4)]
    land(pg_db, tmp_path, "time_entries_1.csv", "time_entries", rows)
    validate_all(pg_db, now=NOW, actor="test")
    keyed = KeyedInputs()
    inputs = staging_inputs(date(2026, 11, 1), date(2026, 11, 30), None)
    with duck_inputs(pg_db, inputs, {}, keyed) as duck:
        seen: list[tuple[int, int, str]] = []
        real = _inputs._pg_copy_arrow
        together = threading.Barrier(_inputs.PG_READERS, timeout=30)

        def spy(conn, inp):
            raw = conn.connection.driver_connection
            cost = conn.exec_driver_sql("SHOW random_page_cost").scalar_one()
            seen.append((raw.info.backend_pid, threading.get_ident(), cost))
            if len(seen) <= _inputs.PG_READERS:
                together.wait()
            return real(conn, inp)

        monkeypatch.setattr(_inputs, "_pg_copy_arrow", spy)
        duck.execute("CREATE TEMP TABLE keys AS SELECT * FROM (VALUES ('K1'), ('K3')) t(entry_id)")
        keyed.load("keys")
        for name in ("r_psa_all", "r_valid_all"):
            got = duck.sql(f"SELECT entry_id FROM {name} ORDER BY 1").fetchall()
            assert got == [("K1",), ("K3",)], name
        assert duck.sql("SELECT COUNT(*) FROM r_ledger_all").fetchall() == [(0,)]
    assert len(seen) == 3
    assert len({pid for pid, _, _ in seen}) >= _inputs.PG_READERS
    assert {c for _, _, c in seen} == {str(_inputs.PG_KEYED_RANDOM_PAGE_COST)}


def test_copy_out_reads_what_psycopg_reads_and_reports_errors(pg_db: StagingDB) -> None:
    """`_copy_out` (rows taken from libpq directly) returns a COPY's output byte for byte as
    psycopg's row iteration does, `_read_csv_streamed` parses it as it streams into the table
    the whole output makes; a statement failing mid-COPY raises its error, and the connection
    stays usable."""
    import io

    import psycopg
    import pyarrow.csv as pacsv

    from reconciliation._inputs import _copy_out, _read_csv_streamed

    sql = (
        "COPY (SELECT g, 'row ' || g, CAST(g AS DECIMAL(18, 4)) / 7 FROM generate_series(1, 20000) g)"
        " TO STDOUT (FORMAT csv, HEADER true)"
    )
    with pg_db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(sql) as cp:
            expected = b"".join(bytes(chunk) for chunk in cp)
        assert _copy_out(raw, sql).getvalue() == expected
        assert expected.count(b"\n") == 20001
        with pytest.raises(psycopg.errors.DivisionByZero):
            _copy_out(
                raw, "COPY (SELECT 1 / (g - 15000) FROM generate_series(1, 20000) g) TO STDOUT"
            )
        raw.rollback()  # the failed statement's transaction
        assert conn.exec_driver_sql("SELECT 2").scalar_one() == 2
        # Parsed while it streams: the same table as parsed whole, and the same error.
        read, convert = pacsv.ReadOptions(use_threads=False), pacsv.ConvertOptions()
        streamed = _read_csv_streamed(raw, sql, read, convert)
        assert streamed.equals(pacsv.read_csv(io.BytesIO(expected), read_options=read))
        assert streamed.num_rows == 20000
        failing = "COPY (SELECT g, 1 / (g - 150000) FROM generate_series(1, 200000) g) TO STDOUT"
        with pytest.raises(psycopg.errors.DivisionByZero):
            _read_csv_streamed(raw, failing, read, convert)
        raw.rollback()
        assert conn.exec_driver_sql("SELECT 3").scalar_one() == 3
