"""Expenses end to end through landing and the contracts, on DuckDB and PostgreSQL.

Landed from canonical CSV files like any dataset (versions, tombstones), checked by the
EXP_* rules (category known, amount > 0 and to the cent, the project's currency, a receipt
above the configured amount, project open on the expense date, the same receipt claimed
twice), quarantined with every rule broken, and copied with the rebilled amount into
`validated_expenses`.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from staging_models.contracts import pandera_schema
from staging_models.db import StagingDB
from staging_models.validation import conservation
from tests.support.expense_world import expense
from tests.support.staging_helpers import World

D = Decimal


@pytest.fixture
def world(any_db: StagingDB, tmp_path: Path) -> World:
    return World(any_db, tmp_path).master()


def _validated(db: StagingDB) -> pd.DataFrame:
    return db.query_df("SELECT * FROM validated_expenses ORDER BY expense_id").set_index(
        "expense_id"
    )


def test_expenses_are_checked_quarantined_and_validated(world: World) -> None:
    world.land(
        "expenses",
        [
            expense(),  # valid: 120.00 + 10 % = 132.00 rebilled
            expense(
                expense_id="X2",
                markup_percent="12.5",
                amount="0.03",
                tax_amount="0",
                receipt_ref="",
            ),
            expense(expense_id="X3", billable="false", receipt_ref="R-3", category="meals"),
            expense(expense_id="BADCAT", category="Golf", receipt_ref="R-4"),
            expense(expense_id="ZERO", amount="0.00", tax_amount="0", receipt_ref="R-5"),
            expense(expense_id="MILLS", amount="12.345", receipt_ref="R-6"),
            expense(expense_id="EUR", currency="EUR", receipt_ref="R-7"),
            expense(expense_id="NORECEIPT", amount="75.01", receipt_ref=""),
            expense(expense_id="ATLIMIT", amount="75.00", receipt_ref="", billable="false"),
            expense(expense_id="CLOSED", project_code="P2", receipt_ref="R-8"),
            expense(expense_id="HOLD", project_code="P4", receipt_ref="R-9"),
            expense(expense_id="EARLY", expense_date="2025-12-31", receipt_ref="R-10"),
            expense(expense_id="ZZDUP", receipt_ref="R-1"),  # R-1 is X1's receipt
            expense(expense_id="TAX", tax_amount="130.00", receipt_ref="R-11"),
            expense(expense_id="MARKUP", markup_percent="-5", receipt_ref="R-12"),
            expense(expense_id="NOTASK", task_code="", receipt_ref="R-13"),
            expense(expense_id="BADTASK", task_code="T7", receipt_ref="R-14"),
            expense(expense_id="NONBILL", project_code="P3", receipt_ref="R-15"),
            expense(expense_id="DRAFT", approval_status="submitted", receipt_ref="R-1"),
        ],
    )
    res = world.validate()["expenses"]
    codes = {k: world.codes(k, "expenses") for k in ("BADCAT", "ZERO", "MILLS", "EUR")}
    assert codes == {
        "BADCAT": {"EXP_CATEGORY_UNKNOWN"},
        "ZERO": {"EXP_AMOUNT_NOT_POSITIVE"},
        "MILLS": {"EXP_AMOUNT_FORMAT"},  # to the cent: never rounded
        "EUR": {"EXP_CURRENCY_MISMATCH"},
    }
    assert world.codes("NORECEIPT", "expenses") == {"EXP_RECEIPT_MISSING"}
    assert world.codes("CLOSED", "expenses") == {"EXP_PROJECT_NOT_OPEN"}
    assert world.codes("HOLD", "expenses") == {"EXP_PROJECT_NOT_OPEN"}
    assert world.codes("EARLY", "expenses") == {"EXP_OUTSIDE_PROJECT_DATES"}
    assert world.codes("ZZDUP", "expenses") == {"EXP_RECEIPT_DUPLICATE"}
    assert world.codes("TAX", "expenses") == {"EXP_TAX_OUT_OF_RANGE"}
    assert world.codes("MARKUP", "expenses") == {"EXP_MARKUP_OUT_OF_RANGE"}
    assert world.codes("BADTASK", "expenses") == {"EXP_UNKNOWN_TASK"}
    assert world.codes("NONBILL", "expenses") == {"EXP_BILLABLE_NOT_ALLOWED"}
    messages = world.db.scalar(
        "SELECT messages FROM quarantine WHERE dataset = 'expenses' AND row_key = 'ZZDUP'"
    )
    assert messages == "receipt R-1 is already claimed by expense X1"
    messages = world.db.scalar(
        "SELECT messages FROM quarantine WHERE dataset = 'expenses' AND row_key = 'NORECEIPT'"
    )
    assert messages == "amount 75.01 USD is over 75.00 and needs a receipt (receipt_ref)"
    assert world.state("DRAFT", "expenses") == "not_postable"  # claims no receipt either
    valid = _validated(world.db)
    assert sorted(valid.index) == ["ATLIMIT", "NOTASK", "X1", "X2", "X3"]
    assert valid.loc["X1", "rebill_amount"] == D("132.00")
    assert valid.loc["X1", "category"] == "travel"  # as configured: lower case
    # 0.03 x 1.125 = 0.03375: half up to the cent
    assert valid.loc["X2", "rebill_amount"] == D("0.03")
    assert valid.loc["X3", "rebill_amount"] == D("0.00")  # not billable
    assert valid.loc["NOTASK", "task_code"] is None
    assert res.valid == 5 and res.quarantined == 13 and res.not_postable == 1
    cons = conservation(world.db, ("expenses",)).iloc[0]
    assert cons["ok"] and cons["rows_read"] == 19 and cons["validated_rows"] == 5


def test_rebilled_amount_rounds_half_up_to_the_cent(world: World) -> None:
    rows = [
        ("H1", "0.01", "50"),  # 0.015 -> 0.02
        ("H2", "0.03", "50"),  # 0.045 -> 0.05
        ("H3", "10.00", "33.3333"),  # 13.33333 -> 13.33
        ("H4", "19.99", "0.0001"),  # 19.99002 -> 19.99
        ("H5", "64.99", "7.5"),  # 69.86425 -> 69.86
    ]
    world.land(
        "expenses",
        [
            expense(expense_id=i, amount=a, markup_percent=m, receipt_ref=f"R-{i}", tax_amount="0")
            for i, a, m in rows
        ],
    )
    world.validate()
    got = _validated(world.db)["rebill_amount"].to_dict()
    assert got == {
        "H1": D("0.02"),
        "H2": D("0.05"),
        "H3": D("13.33"),
        "H4": D("19.99"),
        "H5": D("69.86"),
    }
    for i, a, m in rows:  # the same as Decimal's own half-up rounding
        want = (D(a) * (1 + D(m) / 100)).quantize(D("0.01"), rounding="ROUND_HALF_UP")
        assert got[i] == want


def test_threshold_and_categories_are_settings(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEPOST_EXPENSE_RECEIPT_REQUIRED_ABOVE", "500")
    monkeypatch.setenv("STAGEPOST_EXPENSE_CATEGORIES", "Travel, Golf")
    world.land(
        "expenses",
        [
            expense(expense_id="A", category="golf", amount="400.00", receipt_ref=""),
            expense(expense_id="B", category="meals", receipt_ref="R-B"),
            expense(expense_id="C", amount="500.01", receipt_ref=""),
        ],
    )
    world.validate()
    assert world.state("A", "expenses") == "valid"
    assert world.codes("B", "expenses") == {"EXP_CATEGORY_UNKNOWN"}
    assert (
        world.db.scalar(
            "SELECT messages FROM quarantine WHERE dataset = 'expenses' AND row_key = 'B'"
        )
        == "category 'meals' is not one of travel, golf"
    )
    assert world.codes("C", "expenses") == {"EXP_RECEIPT_MISSING"}


def test_duplicate_receipt_in_one_file_passes_the_first_claim_only(world: World) -> None:
    world.land(
        "expenses",
        [
            expense(expense_id="B2", receipt_ref="R-SAME"),
            expense(expense_id="A1", receipt_ref="R-SAME"),
            expense(expense_id="C3", receipt_ref="R-SAME", approval_status="rejected"),
        ],
    )
    world.validate()
    assert world.state("A1", "expenses") == "valid"
    assert world.codes("B2", "expenses") == {"EXP_RECEIPT_DUPLICATE"}
    assert world.state("C3", "expenses") == "not_postable"
    # The first claim withdrawn (deleted in the PSA): the second is released.
    world.land("expenses", [expense(expense_id="A1", receipt_ref="R-SAME", deleted="true")])
    world.validate()
    assert world.state("A1", "expenses") == "not_postable"
    assert world.state("B2", "expenses") == "valid"


def test_a_correction_is_a_new_version_and_a_fix_releases(world: World) -> None:
    world.land("expenses", [expense(currency="EUR")])
    world.validate()
    assert world.codes("X1", "expenses") == {"EXP_CURRENCY_MISMATCH"}
    world.land("expenses", [expense(amount="99.50", updated_at="2026-11-06T09:00:00Z")])
    world.validate()
    assert world.state("X1", "expenses") == "valid"
    versions = world.db.query_df(
        "SELECT version, state FROM stg_expenses WHERE row_key = 'X1' ORDER BY version"
    )
    assert versions.values.tolist() == [[1, "superseded"], [2, "valid"]]
    assert _validated(world.db).loc["X1", "rebill_amount"] == D("109.45")
    # The same content again (only updated_at moved) changes nothing.
    world.land("expenses", [expense(amount="99.50", updated_at="2026-11-07T09:00:00Z")])
    assert world.db.scalar("SELECT COUNT(*) FROM stg_expenses") == 2


def test_pandera_and_sql_flag_the_same_expense_rows(world: World) -> None:
    world.land(
        "expenses",
        [
            expense(),
            expense(expense_id="Z", amount="0", tax_amount="0", receipt_ref="R-Z"),
            expense(expense_id="T", tax_amount="-1", receipt_ref="R-T"),
            expense(expense_id="M", markup_percent="2000", receipt_ref="R-M"),
            expense(expense_id="F", expense_date="04.11.2026", receipt_ref="R-F"),
        ],
    )
    world.validate()
    frame = world.db.query_df(
        """SELECT s.*, l.raw_expense_date, l.raw_amount, l.raw_tax_amount, l.raw_billable,
                  l.raw_reimbursable, l.raw_markup_percent, l.raw_approved_at, l.raw_updated_at,
                  l.raw_deleted
           FROM stg_expenses s JOIN land_expenses l ON l.load_id = s.load_id
            AND l.row_no = s.row_no ORDER BY s.row_key"""
    )
    schema = pandera_schema("expenses")
    flagged: dict[str, set[str]] = {}
    for check in schema.checks:
        bad = ~check._check_fn(frame).astype(bool)
        for key in frame.loc[bad, "row_key"]:
            flagged.setdefault(key, set()).add(check.name)
    sql = {k: world.codes(k, "expenses") for k in frame["row_key"]}
    for key, codes in flagged.items():
        assert codes <= sql[key], key
    assert flagged == {
        "Z": {"EXP_AMOUNT_NOT_POSITIVE"},
        "T": {"EXP_TAX_OUT_OF_RANGE"},
        "M": {"EXP_MARKUP_OUT_OF_RANGE"},
        "F": {"EXP_EXPENSE_DATE_FORMAT"},
    }


def test_an_expense_on_a_quarantined_project_waits_for_it(world: World) -> None:
    world.land("projects", [{**_project_p1(), "currency": "DOLLAR"}])
    world.land("expenses", [expense()])
    world.validate()
    assert "EXP_PROJECT_NOT_VALID" in world.codes("X1", "expenses")


def _project_p1() -> dict[str, str]:
    from tests.support.staging_helpers import PROJECTS

    return dict(PROJECTS[0], updated_at="2026-02-01T00:00:00Z")


def test_harvest_expense_report_lands_with_the_harvest_mapping(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """The Harvest mapping's [expenses]: the time report first (it derives the master data),
    then the expense report, both as Harvest names them."""
    import shutil

    from resources.psa_source import PsaSource
    from staging_models.landing import ingest_dataset
    from staging_models.validation import validate_all

    data = Path(__file__).resolve().parent / "data" / "vendors" / "harvest"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for f in data.glob("harvest_*_report_*.csv"):
        shutil.copy2(f, inbox / f.name)
    psa = PsaSource(
        inbox=str(inbox), mapping_file="harvest", stable_seconds=0, default_legal_entity="DE01"
    )
    with psa.open() as source:
        for dataset in ("time_entries", "expenses"):
            report = ingest_dataset(
                any_db, source, dataset, fmt=psa.file_format(), workdir=tmp_path / "work"
            )
            assert not report.refused and not report.failures, report.refused or report.failures
            assert len(report.results) == 1
    validate_all(any_db, actor="test")
    got = any_db.query_df(
        """SELECT s.category, s.amount, s.state, s.billable, s.receipt_ref, q.rule_codes
           FROM stg_expenses s LEFT JOIN quarantine q ON q.dataset = 'expenses'
            AND q.row_key = s.row_key AND q.version = s.version
           WHERE s.is_current ORDER BY s.expense_date"""
    )
    assert got[["category", "amount", "state", "rule_codes"]].values.tolist() == [
        ["Travel", D("64.50"), "valid", None],
        ["Meals", D("23.10"), "valid", None],
        ["Lodging", D("180.00"), "quarantined", "EXP_RECEIPT_MISSING"],  # over 75.00
        ["Travel", D("18.40"), "not_postable", None],  # not approved yet
    ]
    assert got["receipt_ref"].iloc[0] == "https://example.harvestapp.com/receipts/1"
    ids = any_db.query_df("SELECT expense_id, currency FROM validated_expenses")
    assert ids["expense_id"].str.startswith("harvest-exp-").all()
    assert set(ids["currency"]) == {"EUR"}
    assert conservation(any_db)["ok"].all()


def test_sample_expenses_are_valid_but_for_their_bad_rows_of_named_kinds(
    any_db: StagingDB, tmp_path: Path
) -> None:
    from datetime import UTC, date, datetime

    from connectors.sample_data import EXPENSE_BAD_KINDS, EXPENSE_BAD_RULES, write_sample
    from staging_models.landing import land_file
    from staging_models.validation import validate_all

    truth = tmp_path / "truth.csv"
    files = write_sample(
        tmp_path / "out", 2000, as_of=date(2026, 11, 20), bad_share=0.3, truth_path=truth
    )
    for dataset in ("employees", "projects", "project_tasks", "rate_cards", "expenses"):
        land_file(any_db, files[dataset], dataset)
    validate_all(any_db, now=datetime(2026, 11, 20, 12, tzinfo=UTC), actor="test")
    bad = pd.read_csv(tmp_path / "truth_expenses.csv", dtype=str)
    assert set(bad["kind"]) == set(EXPENSE_BAD_KINDS)
    rows = any_db.query_df(
        """SELECT s.row_no, s.state, q.rule_codes FROM stg_expenses s
           LEFT JOIN quarantine q ON q.dataset = 'expenses' AND q.row_key = s.row_key
            AND q.version = s.version WHERE s.is_current ORDER BY s.row_no"""
    )
    by_row = {int(r.row_no): r for r in rows.itertuples()}
    first_row = min(by_row)  # the file's first data row (row numbers as landing counts them)
    flagged = {int(i) + first_row: k for i, k in zip(bad["row_index"], bad["kind"], strict=True)}
    for row_no, r in by_row.items():
        if row_no in flagged:
            assert r.state == "quarantined", (row_no, flagged[row_no])
            assert EXPENSE_BAD_RULES[flagged[row_no]] in r.rule_codes.split(","), r.rule_codes
        else:
            assert r.state == "valid", (row_no, r.rule_codes)
    assert len(by_row) > len(flagged) > 0
