"""Expenses posted as ERP expense lines, end to end on DuckDB and PostgreSQL: landed from CSV,
validated, posted by a window into the SQL-interface ERP with their own external IDs; a
correction is a reversal plus a new line, a deletion a reversal; closed periods hold or move
them as they do time lines; a second window posts nothing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from tests.support.expense_world import ExpenseEnv, expense
from tests.support.posting_helpers import ledger

pytest_plugins = ["tests.support.expense_fixtures"]

D = Decimal
#: The expense world and SQL-interface ERP (`tests.support.expense_fixtures`).
Env = ExpenseEnv


@pytest.fixture
def env(expense_env: ExpenseEnv) -> ExpenseEnv:
    return expense_env


def _land(env: Env, *rows: dict[str, str]) -> None:
    env.land(*rows)


def test_valid_expenses_are_posted_once_with_their_own_external_ids(env: Env) -> None:
    _land(
        env,
        expense(),
        expense(expense_id="X2", billable="false", reimbursable="false", receipt_ref="R-2"),
        expense(expense_id="BAD", currency="EUR", receipt_ref="R-3"),  # quarantined
        expense(expense_id="XDUP", receipt_ref="R-1"),  # X1 claimed R-1 first: quarantined
    )
    dry = env.window(dry_run=True)
    assert dry.counts["expense_line_post_planned"] == 2
    summary = dry.summary[dry.summary["document"] == "expense_line"]
    assert summary["amount"].tolist() == [D("240.00")]

    result = env.window()
    assert result.status == "completed" and result.counts["confirmed"] == 2
    assert result.counts["expense_lines_confirmed"] == 2
    assert result.counts["amount_confirmed_expense_lines"] == {"USD": "240.00"}
    lines = env.erp_lines()
    assert sorted(lines.index) == ["exp:X1:v1:post", "exp:X2:v1:post"]
    x1 = lines.loc["exp:X1:v1:post"]
    assert (x1["amount"], x1["tax_amount"], x1["rebill_amount"]) == (
        D("120.00"),
        D("10.00"),
        D("132.00"),
    )
    assert (x1["category"], x1["period"], x1["legal_entity"]) == ("travel", "2026-11", "US01")
    assert bool(x1["billable"]) and bool(x1["reimbursable"])
    x2 = lines.loc["exp:X2:v1:post"]
    assert x2["rebill_amount"] == D("0.00") and not bool(x2["reimbursable"])
    led = ledger(env.world.db, "expense_ledger")
    assert led["state"].tolist() == ["confirmed", "confirmed"]
    batches = env.world.db.query_df("SELECT document, state, lines FROM posting_batches")
    assert batches.values.tolist() == [["expense_line", "confirmed", 2]]

    again = env.window()  # nothing new: nothing posted twice
    assert again.counts.get("expense_line_post_planned", 0) == 0
    assert len(env.erp_lines()) == 2


def test_a_correction_is_a_reversal_plus_a_new_line_and_a_deletion_a_reversal(env: Env) -> None:
    _land(env, expense(), expense(expense_id="X2", receipt_ref="R-2"))
    env.window()
    _land(
        env,
        expense(amount="99.50", markup_percent="20", updated_at="2026-11-06T09:00:00Z"),
        expense(expense_id="X2", receipt_ref="R-2", deleted="true"),
    )
    result = env.window()
    assert result.status == "completed"
    lines = env.erp_lines()
    rev = lines.loc["exp:X1:v1:rev"]
    assert rev["kind"] == "reversal" and rev["reverses_external_id"] == "exp:X1:v1:post"
    assert (rev["amount"], rev["tax_amount"], rev["rebill_amount"]) == (
        D("-120.00"),
        D("-10.00"),
        D("-132.00"),
    )
    new = lines.loc["exp:X1:v2:post"]
    assert (new["amount"], new["rebill_amount"]) == (D("99.50"), D("119.40"))
    assert lines.loc["exp:X2:v1:rev", "amount"] == D("-120.00")
    assert "exp:X2:v2:post" not in lines.index
    net = lines.groupby("expense_id")[["amount", "rebill_amount"]].sum()
    assert net.loc["X1"].tolist() == [D("99.50"), D("119.40")]
    assert net.loc["X2"].tolist() == [D("0.00"), D("0.00")]
    # The pair went in one batch.
    led = ledger(env.world.db, "expense_ledger").set_index("external_id")
    assert led.loc["exp:X1:v1:rev", "batch_id"] == led.loc["exp:X1:v2:post", "batch_id"]


def test_closed_periods_hold_or_move_expense_lines(env: Env) -> None:
    _land(env, expense())
    env.erp.set_period("US01", "2026-11", False)
    held = env.window(closed_period_policy="hold")
    assert held.counts["expense_line_post_held"] == 1
    led = ledger(env.world.db, "expense_ledger")
    assert led["state"].tolist() == ["held"]
    assert "Posting period 2026-11 is closed for US01" in led["erp_message"].iloc[0]
    assert env.erp_lines().empty
    moved = env.window(closed_period_policy="next_open")
    assert moved.counts["confirmed"] == 1
    line = env.erp_lines().loc["exp:X1:v1:post"]
    assert line["period"] == "2026-12" and line["expense_date"] == date(2026, 11, 4)


def test_the_erp_rejects_a_line_it_cannot_book_and_the_next_window_retries(env: Env) -> None:
    _land(env, expense())
    # The ERP knows project P1 in another legal entity: it rejects the line, with its message.
    env.erp.ensure_master_data(
        pd.DataFrame({"customer_id": ["C1"], "customer_name": ["Acme"]}),
        pd.DataFrame({"employee_id": ["E1"], "employee_name": ["Ann"], "legal_entity": ["US01"]}),
        pd.DataFrame(
            {
                "project_code": ["P1"],
                "project_name": ["Audit"],
                "customer_id": ["C1"],
                "legal_entity": ["DE01"],
                "currency": ["USD"],
            }
        ),
        pd.DataFrame({"project_code": ["P1"], "task_code": ["T1"], "task_name": ["T1"]}),
    )
    result = env.window()
    assert result.counts["rejected"] == 1
    rejected = result.rejections
    assert rejected["document"].tolist() == ["expense_line"]
    assert rejected["erp_message"].iloc[0] == "Project P1 belongs to legal entity DE01, not US01"


def test_reconciliation_classes_and_totals_of_expenses(env: Env) -> None:
    from reconciliation.compare import Period, reconcile

    _land(
        env,
        expense(),
        expense(expense_id="X2", receipt_ref="R-2", amount="50.00", markup_percent="0"),
        expense(expense_id="X3", receipt_ref="R-3", currency="EUR"),  # quarantined
        expense(expense_id="X4", receipt_ref="R-4", approval_status="submitted"),
    )
    env.window()
    # After posting: X1 changes (not posted yet), X5 arrives valid, and the ERP loses nothing.
    _land(
        env,
        expense(amount="99.50", updated_at="2026-11-06T09:00:00Z"),
        expense(expense_id="X5", receipt_ref="R-5", amount="10.00", tax_amount="0"),
    )
    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    rec = reconcile(env.world.db, env.erp, period)
    got = rec.expenses.set_index("expense_id")
    assert got["class"].to_dict() == {
        "X1": "changed_in_psa_since_posting",
        "X2": "in_sync",
        "X3": "quarantined",
        "X4": "not_postable",
        "X5": "approved_not_posted",
    }
    assert got.loc["X1", "reasons"] == "posted version 1, PSA now at version 2"
    assert got.loc["X3", "rule_codes"] == "EXP_CURRENCY_MISMATCH"
    assert got.loc["X2", ["ledger_amount", "erp_amount", "erp_rebill_amount"]].tolist() == [
        D("50.00"),
        D("50.00"),
        D("50.00"),
    ]
    assert rec.counts("expense_class") == {
        "changed_in_psa_since_posting": 1,
        "in_sync": 1,
        "quarantined": 1,
        "not_postable": 1,
        "approved_not_posted": 1,
    }
    totals = {
        name: rec.amounts(name, kind="expense_total")
        for name in ("staging_valid", "ledger_confirmed", "erp", "variance", "rebill_erp")
    }
    zero = {"EUR": D("0.00")}  # X3, quarantined in EUR: per currency, never summed across
    assert totals == {
        "staging_valid": {**zero, "USD": D("159.50")},  # X1 v2 99.50 + X2 50.00 + X5 10.00
        "ledger_confirmed": {**zero, "USD": D("170.00")},
        "erp": {**zero, "USD": D("170.00")},
        "variance": {**zero, "USD": D("-10.50")},
        "rebill_erp": {**zero, "USD": D("182.00")},
    }
    # The window posts the correction and X5: everything in sync, no variance.
    env.window()
    rec = reconcile(env.world.db, env.erp, period)
    assert set(rec.expenses.set_index("expense_id")["class"]) == {
        "in_sync",
        "quarantined",
        "not_postable",
    }
    assert rec.amounts("variance", kind="expense_total") == {"EUR": D("0.00"), "USD": D("0.00")}
    assert rec.amounts("erp", kind="expense_total") == {"EUR": D("0.00"), "USD": D("159.50")}
    # A line in the ERP that the ledger never sent is flagged.
    extra = env.erp.read_expense_lines(date(2026, 11, 1), date(2026, 11, 30)).head(1).copy()
    extra["external_id"] = "exp:ZZ:v1:post"
    extra["expense_id"] = "ZZ"
    env.erp.post_expense_lines(extra)
    rec = reconcile(env.world.db, env.erp, period)
    assert rec.expenses.set_index("expense_id").loc["ZZ", "class"] == "erp_unknown_to_staging"


def test_the_workbook_shows_expense_exceptions_and_totals(env: Env, tmp_path: Path) -> None:
    import openpyxl

    from reconciliation.compare import Period, reconcile
    from reconciliation.report import write_reconciliation_workbook

    _land(
        env,
        expense(),
        expense(expense_id="X3", receipt_ref="R-3", currency="EUR"),  # quarantined
    )
    env.window()
    formula = '=HYPERLINK("http://x")'  # a receipt reference stays text, never a formula
    _land(env, expense(expense_id="X5", receipt_ref=formula, amount="10.00", tax_amount="0"))
    rec = reconcile(env.world.db, env.erp, Period(date(2026, 11, 1), date(2026, 11, 30)))
    info = write_reconciliation_workbook(
        tmp_path / "rec.xlsx",
        period_label=rec.period.label(),
        kpis=rec.kpi_frame(),
        totals=rec.totals,
        invoices=rec.invoices,
        lines=rec.lines,
        expenses=rec.expenses,
    )
    assert "Expense exceptions" in info.sheet_names and "Expense totals" in info.sheet_names
    wb = openpyxl.load_workbook(info.path)
    ws = wb["Expense exceptions"]
    header = [c.value for c in next(ws.iter_rows(max_row=1))]
    rows = [dict(zip(header, (c.value for c in r), strict=True)) for r in ws.iter_rows(min_row=2)]
    by_id = {r["Expense"]: r for r in rows}
    assert set(by_id) == {"X3", "X5"}  # X1 is in sync: no exception
    assert by_id["X3"]["Exception"] == "Quarantined"
    assert by_id["X3"]["Rules broken"] == "EXP_CURRENCY_MISMATCH"
    assert by_id["X5"]["Exception"] == "Approved, not posted"
    assert by_id["X5"]["Receipt"] == formula
    receipt = next(c for c in ws[3 if rows[0]["Expense"] == "X3" else 2] if c.value == formula)
    assert receipt.data_type == "s" and receipt.quotePrefix
    totals = wb["Expense totals"]
    header = [c.value for c in next(totals.iter_rows(max_row=1))]
    usd = [
        dict(zip(header, (c.value for c in r), strict=True))
        for r in totals.iter_rows(min_row=2)
        if r[1].value == "USD"
    ]
    assert len(usd) == 1 and usd[0]["ERP"] == 120 and usd[0]["Staging, valid"] == 130
    assert usd[0]["Variance (staging - ERP)"] == 10
    summary = [[c.value for c in r] for r in wb["Summary"].iter_rows()]
    assert ["Expenses: Approved, not posted", 1] in [r[:2] for r in summary]
