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
