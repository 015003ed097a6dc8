"""Three-way reconciliation: every seeded discrepancy is found, in exactly the seeded numbers."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from connectors.erp.base import TIME_LINE_COLUMNS
from reconciliation.compare import (
    ENTRY_CLASSES,
    EXCEPTION_CLASSES,
    LINE_COLUMNS,
    Period,
    Reconciliation,
    reconcile,
)
from staging_models.db import StagingDB
from staging_models.validation import validate_all
from tests.support.recon_helpers import (
    EXPECTED_CLASSES,
    EXPECTED_INVOICE_CLASSES,
    KEYLESS_ROWS,
    NOW,
    Books,
    SeededWorld,
    entry_row,
    land,
    make_erp,
)
from tests.support.staging_helpers import World


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[SeededWorld, Reconciliation]:
    """One seeded DuckDB world for the read-only tests of this module (built once: ~1 s)."""
    folder = tmp_path_factory.mktemp("seeded")
    db = StagingDB(f"duckdb:///{folder / 'staging.duckdb'}")
    db.init_schema()
    world = SeededWorld(db, folder)
    yield world, world.reconcile()
    db.engine.dispose()
    world.erp.close()


def _classes(rec: Reconciliation) -> dict[str, set[str]]:
    lines = rec.lines_frame()
    got = {c: set(g["entry_id"]) for c, g in lines.groupby("class")}
    in_sync = rec.counts().get("in_sync", 0)
    return got, in_sync


def test_every_seeded_class_is_found_exactly(seeded) -> None:
    _, rec = seeded
    got, in_sync = _classes(rec)
    expected = {c: ids for c, ids in EXPECTED_CLASSES.items() if c in EXCEPTION_CLASSES}
    assert got == expected
    counts = rec.counts()
    assert counts == {c: len(ids) for c, ids in EXPECTED_CLASSES.items()}
    assert in_sync == len(EXPECTED_CLASSES["in_sync"])
    assert set(counts) <= set(ENTRY_CLASSES)
    assert rec.lines.column_names == list(LINE_COLUMNS)


def test_lines_say_why(seeded) -> None:
    _, rec = seeded
    lines = rec.lines_frame().set_index("entry_id")
    assert lines.loc["V1", "differing_fields"] == "hours,amount"
    assert lines.loc["V2", "differing_fields"] == "project"
    assert lines.loc["V1", "erp_hours"] == Decimal("7.0000")
    assert lines.loc["C1", "differing_fields"] == "hours,amount"  # ERP still has version 1
    assert "posted version 1, PSA now at version 2" in lines.loc["C1", "reasons"]
    assert "deleted in the PSA" in lines.loc["C2", "reasons"]
    assert (
        "missing from the latest full PSA export time_entries_full_002.csv"
        in (lines.loc["C3", "reasons"])
    )
    assert "te:M1:v1:post" in lines.loc["M1", "reasons"]
    assert "manual:U1" in lines.loc["U1", "reasons"]
    assert "ledger rejected" in lines.loc["U2", "reasons"]
    assert "time_entries_004.csv" in lines.loc["S1", "reasons"]
    assert lines.loc["S1", "legal_entity"] == "US01"  # from the project, as staging would
    assert lines.loc["S2", "reasons"] == "landed, not validated yet"
    assert lines.loc["Q2", "rule_codes"] == "TE_PROJECT_CLOSED"
    assert lines.loc["Q2", "reasons"] == "project P2 is closed"
    assert lines.loc["N3", "ledger_state"] == "held"
    assert "Posting period 2026-11 is closed" in lines.loc["N3", "reasons"]
    ages = lines.loc[["N1", "N3", "N2", "N4"], ["age_days", "aging_bucket"]]
    assert ages["age_days"].tolist() == [0, 5, 17, 45]
    assert ages["aging_bucket"].tolist() == ["0-1", "2-7", "8-30", ">30"]


def test_key_figures(seeded) -> None:
    _, rec = seeded
    assert rec.kpi("approved_entries")["entries"] == 17
    assert rec.kpi("straight_through_entries")["entries"] == 7
    assert rec.kpi("straight_through_rate")["value"] == pytest.approx(7 / 17)
    unposted = rec.kpi("approved_not_posted")
    assert (unposted["entries"], unposted["hours"], unposted["amount"]) == (
        4,
        Decimal("30.0000"),
        None,  # an amount over all currencies is no amount
    )
    assert rec.amounts("approved_not_posted") == {"USD": Decimal("4500.00")}
    assert rec.counts("aging") == {"0-1": 1, "2-7": 1, "8-30": 1, ">30": 1}
    assert rec.counts("reason") == {
        "TE_PROJECT_CLOSED": 1,
        "TE_UNKNOWN_PROJECT": 1,
        "TE_KEY_MISSING": 1,  # the rows without a key count among the reasons too
        "TE_WORK_DATE_FORMAT": 1,
    }
    backlog = rec.kpi("invoice_ready_backlog_lines")
    assert backlog["entries"] == 1
    assert rec.amounts("invoice_ready_backlog_lines") == {"USD": Decimal("2000.00")}
    assert rec.kpi("invoice_ready_backlog_invoices")["entries"] == 1
    # Per legal entity: DE01 has one entry, posted straight through.
    assert rec.kpi("straight_through_rate", "DE01")["value"] == 1.0
    assert rec.counts(legal_entity="DE01") == {"in_sync": 1}


def test_invoices(seeded) -> None:
    _, rec = seeded
    got = {c: set(g["invoice_id"]) for c, g in rec.invoices.groupby("class")}
    assert got == EXPECTED_INVOICE_CLASSES
    i4 = rec.invoices.set_index("invoice_id").loc["I4"]
    assert (i4["differing_fields"], i4["amount_variance"]) == ("amount", Decimal("1.00"))


def test_totals_per_state_and_variances(seeded) -> None:
    _, rec = seeded
    t = rec.totals
    le = t[t["dimension"] == "legal_entity"].set_index("legal_entity")
    de = le.loc["DE01"]
    assert de["currency"] == "EUR"
    assert de["psa_hours"] == de["staging_hours"] == de["ledger_hours"] == de["erp_hours"]
    assert de["psa_hours"] == Decimal("7.5")
    assert de["variance_staging_erp_amount"] == 0
    us = le.loc["US01"]
    # Every state, as summed line by line from the seeded rows (PSA: approved current versions
    # not deleted; staging: valid ones; ledger: confirmed lines; ERP: its lines).
    states = ["psa", "staging", "ledger", "erp"]
    assert [us[f"{s}_hours"] for s in states] == [116, Decimal("93.5"), Decimal("73.5"), 76]
    assert [us[f"{s}_amount"] for s in states] == [17400, 14025, 11025, 11400]
    # Ledger vs ERP: M1 missing (+7.5), U2 and U1 unknown to the ledger (-7.5, -3), V1 short 0.5.
    assert us["variance_ledger_erp_hours"] == Decimal("-2.5")
    assert us["variance_ledger_erp_amount"] == Decimal("1125") - 1125 - 450 + 75
    # Per project: V2's ERP line sits on P9, which the PSA never had.
    p9 = t[(t["dimension"] == "project") & (t["member"] == "P9")].iloc[0]
    assert (p9["psa_hours"], p9["erp_hours"]) == (0, Decimal("7.5"))
    periods = set(t.loc[t["dimension"] == "period", "member"])
    assert periods == {"2026-10", "2026-11"}
    # Every dimension adds up to the same legal-entity totals.
    num = [c for c in t.columns if c.endswith(("_hours", "_amount"))]
    for dim in ("project", "employee", "period"):
        sums = t[t["dimension"] == dim].groupby(["legal_entity", "currency"])[num].sum()
        base = t[t["dimension"] == "legal_entity"].set_index(["legal_entity", "currency"])[num]
        pd.testing.assert_frame_equal(sums.sort_index(), base.sort_index(), check_dtype=False)


def test_legal_entity_scope(seeded) -> None:
    world, _ = seeded
    rec = world.reconcile(legal_entities=["DE01"])
    assert rec.counts() == {"in_sync": 1}
    assert set(rec.totals["legal_entity"]) == {"DE01"}
    assert rec.lines.num_rows == 0


def test_without_full_export_pattern_deletions_are_explicit_only(seeded) -> None:
    world, _ = seeded
    rec = world.reconcile(full_export_pattern=None)
    got, _ = _classes(rec)
    assert "deleted_in_psa" not in got
    assert got["changed_in_psa_since_posting"] == {"C1", "C2"}
    assert "D1" in got["approved_not_posted"]
    assert any("Deleted-in-PSA detection: off" in n for n in rec.notes)


def test_reversal_and_repost_net_to_the_current_value(duck_db: StagingDB, tmp_path: Path) -> None:
    w = World(duck_db, tmp_path).master()
    land(duck_db, tmp_path, "time_entries_1.csv", "time_entries", [entry_row("R", 2, hours="8.00")])
    validate_all(duck_db, now=NOW, actor="test")
    books = Books(duck_db, make_erp(tmp_path))
    books.post("R", 1)
    edited = entry_row("R", 2, hours="6.00", updated_at="2026-11-10T00:00:00Z")
    land(duck_db, tmp_path, "time_entries_2.csv", "time_entries", [edited])
    w.validate()
    books.reverse("R", 1)
    books.post("R", 2)
    rec = reconcile(duck_db, books.erp, Period(date(2026, 11, 1), date(2026, 11, 30)), now=NOW)
    assert rec.counts() == {"in_sync": 1}
    row = rec.totals[rec.totals["dimension"] == "legal_entity"].iloc[0]
    assert row["erp_hours"] == row["ledger_hours"] == row["psa_hours"] == Decimal("6")
    assert row["erp_amount"] == Decimal("900.00")
    variances = [c for c in rec.totals.columns if c.startswith("variance")]
    assert (rec.totals[variances] == 0).all().all()
    books.erp.close()


def test_float_erp_amounts_are_refused(duck_db: StagingDB) -> None:
    frame = pd.DataFrame({c: pd.Series([None], dtype=object) for c in TIME_LINE_COLUMNS})
    frame["hours"] = [7.5]
    with pytest.raises(TypeError, match="Decimal"):
        reconcile(
            duck_db, None, Period(date(2026, 11, 1), date(2026, 11, 30)), erp_time_lines=frame
        )


def test_classification_is_the_same_on_postgresql(any_db: StagingDB, tmp_path: Path) -> None:
    world = SeededWorld(any_db, tmp_path)
    rec = world.reconcile()
    got, in_sync = _classes(rec)
    assert got == {c: ids for c, ids in EXPECTED_CLASSES.items() if c in EXCEPTION_CLASSES}
    assert in_sync == len(EXPECTED_CLASSES["in_sync"])
    assert {c: set(g["invoice_id"]) for c, g in rec.invoices.groupby("class")} == (
        EXPECTED_INVOICE_CLASSES
    )
    assert rec.kpi("straight_through_entries")["entries"] == 7
    le = rec.totals[rec.totals["dimension"] == "legal_entity"].set_index("legal_entity")
    assert le.loc["US01", "variance_ledger_erp_hours"] == Decimal("-2.5")
    _assert_keyless_rows(rec)
    world.erp.close()


def _assert_keyless_rows(rec: Reconciliation) -> None:
    lines = rec.lines_frame()
    keyless = lines[lines["class"] == "quarantined_without_key"]
    assert set(zip(keyless["entry_id"], keyless["row_no"], strict=True)) == KEYLESS_ROWS
    assert set(keyless["source_file"]) == {"time_entries_001.csv"}
    by_id = keyless.set_index(keyless["entry_id"].fillna("(none)"))
    assert by_id.loc["(none)", "reasons"].startswith("no entry id; ")
    assert by_id.loc["(none)", "psa_hours"] == Decimal("1.2500")
    assert by_id.loc["K2", "reasons"].startswith("no readable work date (read: 2026-11-31); ")
    assert by_id.loc["K2", "rule_codes"] == "TE_WORK_DATE_FORMAT"
    assert (by_id["legal_entity"] == "US01").all()  # from the project, as for any entry
    assert rec.counts()["quarantined_without_key"] == 2
    assert rec.counts(legal_entity="US01")["quarantined_without_key"] == 2
    # Every other line names an entry: file and row are the keyless class's own.
    assert lines.loc[lines["class"] != "quarantined_without_key", "source_file"].isna().all()


def test_rows_without_a_key_have_a_class_with_file_and_row(seeded) -> None:
    """Quarantined rows without an entry id or with an unreadable work date: no entry-and-date
    comparison can place them, so they have a class of their own, with file and row."""
    _, rec = seeded
    _assert_keyless_rows(rec)


def test_rows_without_a_key_in_a_legal_entity_scope(seeded) -> None:
    world, _ = seeded
    assert "quarantined_without_key" not in world.reconcile(legal_entities=("DE01",)).counts()
    us = world.reconcile(legal_entities=("US01",))
    assert us.counts()["quarantined_without_key"] == 2


def test_key_figure_amounts_are_per_currency(seeded) -> None:
    """Amounts are summed within one currency only: the rows over all currencies have none."""
    _, rec = seeded
    k = rec.kpis
    assert k.loc[k["currency"].isna(), "amount"].isna().all()
    lines = rec.lines_frame()
    for cls in EXCEPTION_CLASSES:
        mine = lines[lines["class"] == cls]
        amount = mine["psa_amount"].where(mine["psa_amount"].notna(), mine["erp_amount"])
        expected = {
            cur: sum((a for a in g if a is not None), Decimal(0))
            for cur, g in amount.groupby(mine["currency"])
            if g.notna().any()  # no known amount (no rate resolved): no amount, not 0.00
        }
        assert rec.amounts(cls, kind="class") == expected, cls
    # Rows without a key have no resolved rate: their amount is unknown, never shown as 0.00.
    assert rec.amounts("quarantined_without_key", kind="class") == {}
    # The seeded world has EUR (DE01) and USD (US01) in sync: two amounts, never one sum.
    assert set(rec.amounts("in_sync", kind="class")) == {"EUR", "USD"}
    assert set(rec.amounts("in_sync", kind="class", legal_entity="DE01")) == {"EUR"}


def test_entry_moved_to_another_month(any_db: StagingDB, tmp_path: Path) -> None:
    """October's posting of an entry later moved to November: each month sees its own lines."""
    World(any_db, tmp_path).master()
    oct_row = entry_row("MV", -20, updated_at="2026-10-13T00:00:00Z")  # 2026-10-12
    land(any_db, tmp_path, "time_entries_1.csv", "time_entries", [oct_row])
    validate_all(any_db, now=NOW, actor="test")
    books = Books(any_db, make_erp(tmp_path))
    books.post("MV", 1)
    moved = entry_row("MV", 2, updated_at="2026-11-10T00:00:00Z")  # now dated 2026-11-03
    land(any_db, tmp_path, "time_entries_2.csv", "time_entries", [moved])
    validate_all(any_db, now=NOW, actor="test")
    october = Period(date(2026, 10, 1), date(2026, 10, 31))
    november = Period(date(2026, 11, 1), date(2026, 11, 30))

    def classes(period: Period) -> dict[str, int]:
        return reconcile(any_db, books.erp, period, now=NOW).counts()

    # Before the correction is posted, both months point at it.
    assert classes(october) == {"changed_in_psa_since_posting": 1}
    assert classes(november) == {"changed_in_psa_since_posting": 1}
    books.reverse("MV", 1)
    books.post("MV", 2)
    assert classes(october) == {"in_sync": 1}  # posted and reversed there: nets to zero
    assert classes(november) == {"in_sync": 1}
    rec = reconcile(any_db, books.erp, october, now=NOW)
    assert rec.totals["erp_hours"].sum() == rec.totals["psa_hours"].sum() == 0
    books.erp.close()


def test_duplicate_erp_line_under_another_external_id(duck_db: StagingDB, tmp_path: Path) -> None:
    """A retry that minted a new external ID (DOMAIN #5): same values, so only the ID differs."""
    World(duck_db, tmp_path).master()
    rows = [entry_row("D", 2), entry_row("OK", 3)]
    land(duck_db, tmp_path, "time_entries_1.csv", "time_entries", rows)
    validate_all(duck_db, now=NOW, actor="test")
    books = Books(duck_db, make_erp(tmp_path))
    line = books.post("D", 1)
    books.post("OK", 1)
    books.erp_lines([{**line, "external_id": "te:D:v1:post:retry"}])
    rec = reconcile(duck_db, books.erp, Period(date(2026, 11, 1), date(2026, 11, 30)), now=NOW)
    assert rec.counts() == {"erp_unknown_to_staging": 1, "in_sync": 1}
    d = rec.lines_frame().set_index("entry_id").loc["D"]
    assert "te:D:v1:post:retry" in d["reasons"] and d["erp_hours"] == 2 * line["hours"]
    assert rec.exact_path_entries == 1
    books.erp.close()


@pytest.mark.parametrize("legal_entities", [(), ("US01",)])
def test_plain_not_postable_entries_are_counted_as_the_exact_path_would(
    any_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legal_entities
) -> None:
    """Never-posted entries that are not postable (Z1, a draft) skip the line-by-line path
    (`_inputs._PLAIN`, `_sql.PLAIN`): the figures are those of the exact path, which still
    takes a posted entry deleted since (C2), with and without PSA files not landed yet."""
    from reconciliation import _inputs

    world = SeededWorld(any_db, tmp_path)
    results = {}
    for plain in ("fast", "exact"):
        if plain == "exact":
            monkeypatch.setattr(_inputs, "_PLAIN", "FALSE")
        for unlanded in (True, False):
            if not unlanded:
                saved, world.unlanded = world.unlanded, None
            results[plain, unlanded] = world.reconcile(legal_entities=legal_entities)
            if not unlanded:
                world.unlanded = saved
    for unlanded in (True, False):
        fast, exact = results["fast", unlanded], results["exact", unlanded]
        assert fast.exact_path_entries == exact.exact_path_entries - 1  # Z1
        pd.testing.assert_frame_equal(fast.kpis, exact.kpis)
        pd.testing.assert_frame_equal(fast.totals, exact.totals)
        assert fast.lines.equals(exact.lines)
        np = fast.kpis[(fast.kpis["kind"] == "class") & (fast.kpis["name"] == "not_postable")]
        assert set(np["entries"]) == {1}  # Z1: per currency and over all of them
    world.erp.close()
