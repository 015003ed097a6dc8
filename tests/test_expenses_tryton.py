"""Expenses posted into a real Tryton 8.2: landed from CSV, validated, posted by a window as
journal entries of the expense journal (see `connectors/erp/tryton_expenses.py`); a
correction is a reversing entry plus a new one; Tryton's own balances net to the expenses;
a closed month moves the entry into the next open one."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from connectors.erp.tryton import TrytonTarget
from posting.window import RetryPolicy, WindowConfig, WindowResult, run_window
from staging_models.db import StagingDB
from tests.support.expense_world import expense
from tests.support.posting_helpers import ledger
from tests.support.staging_helpers import World
from tests.support.tryton_fixtures import LEGAL_ENTITY

if TYPE_CHECKING:
    from tests.support.tryton_fixtures import TrytonHost

pytestmark = pytest.mark.slow

D = Decimal
FAR = (dt.date(2000, 1, 1), dt.date(2100, 12, 31))


def _master(world: World) -> None:
    world.land(
        "employees",
        [
            dict(
                employee_id=e,
                employee_name=n,
                legal_entity=LEGAL_ENTITY,
                role="senior",
                cost_rate="80.00",
                currency="USD",
                active="true",
            )
            for e, n in (("E1", "Ann Lee"), ("E2", "Bo Chen"))
        ],
    )
    world.land(
        "projects",
        [
            dict(
                project_code="P1",
                project_name="Audit",
                customer_id="C1",
                customer_name="Acme",
                legal_entity=LEGAL_ENTITY,
                currency="USD",
                billing_method="time_and_materials",
                status="open",
                start_date="2026-01-01",
                end_date="2026-12-31",
                updated_at="2026-01-01T00:00:00Z",
            )
        ],
    )
    world.land(
        "project_tasks",
        [dict(project_code="P1", task_code="T1", task_name="Fieldwork", billable="true")],
    )


def _window(db: StagingDB, erp: TrytonTarget) -> WindowResult:
    return run_window(
        db,
        erp,
        WindowConfig(dry_run=False, retry=RetryPolicy(attempts=2, base_delay=0)),
        sleep=lambda s: None,
    )


def _balance(erp: TrytonTarget, account: int) -> Decimal:
    lines = erp.rpc.model(
        "account.move.line",
        "search_read",
        [("account", "=", account)],
        0,
        None,
        None,
        ["debit", "credit"],
    )
    return sum((ln["debit"] - ln["credit"] for ln in lines), D(0))


def test_expenses_are_journal_entries_posted_once_reversed_and_reconciled(
    tryton_host: TrytonHost, any_db: StagingDB, tmp_path: Path
) -> None:
    """DuckDB and PostgreSQL staging into Tryton, then reconciled against what Tryton holds."""
    erp = tryton_host.fresh_target()
    (cash,) = erp.rpc.model("account.account", "search", [("code", "=", "1.1.1")], 0, 1, None)
    erp = TrytonTarget(
        tryton_host.server.url,
        erp.rpc.database,
        "admin",
        tryton_host.server.password,
        legal_entities=tryton_host.server.legal_entities,
        expense_clearing_account=cash,
    )
    db = any_db
    world = World(db, tmp_path)
    _master(world)
    world.land(
        "expenses",
        [
            expense(),  # reimbursable, billable, on task T1
            expense(
                expense_id="X2",
                employee_id="E2",
                task_code="",
                reimbursable="false",
                billable="false",
                amount="40.00",
                tax_amount="0",
                receipt_ref="",
                category="meals",
            ),
        ],
    )
    world.validate()
    first = _window(db, erp)
    assert first.status == "completed", first.message
    assert first.counts["confirmed"] == 2 and first.counts["rejected"] == 0
    lines = erp.read_expense_lines(*FAR).set_index("external_id")
    assert sorted(lines.index) == ["exp:X1:v1:post", "exp:X2:v1:post"]
    x1 = lines.loc["exp:X1:v1:post"]
    assert x1[
        ["expense_id", "expense_version", "employee_id", "project_code", "task_code"]
    ].tolist() == [
        "X1",
        1,
        "E1",
        "P1",
        "T1",
    ]
    assert x1[["amount", "tax_amount", "rebill_amount", "markup_percent"]].tolist() == [
        D("120.00"),
        D("10.00"),
        D("132.00"),
        D("10.0000"),
    ]
    assert (x1["category"], x1["period"], x1["currency"], x1["receipt_ref"]) == (
        "travel",
        "2026-11",
        "USD",
        "R-1",
    )
    assert bool(x1["billable"]) and bool(x1["reimbursable"])
    x2 = lines.loc["exp:X2:v1:post"]
    assert x2["task_code"] is None and not bool(x2["reimbursable"])
    refs = erp.expense_refs
    assert _balance(erp, refs.expense_account) == D("160.00")
    assert _balance(erp, cash) == D("-40.00")  # the company paid X2
    moves = erp.rpc.model(
        "account.move",
        "search_read",
        [("external_id", "!=", None)],
        0,
        None,
        None,
        ["state", "journal"],
    )
    assert {m["state"] for m in moves} == {"posted"} and {m["journal"] for m in moves} == {
        refs.journal
    }
    # The employee is owed X1, on the payable account with the employee's party.
    (party,) = erp.rpc.model(
        "party.party", "search", [("external_id", "=", "employee:E1")], 0, 1, None
    )
    owed = erp.rpc.model(
        "account.move.line", "search_read", [("party", "=", party)], 0, None, None, ["credit"]
    )
    assert [ln["credit"] for ln in owed] == [D("120.00")]

    assert _window(db, erp).counts["lines_sendable"] == 0  # nothing twice

    world.land("expenses", [expense(amount="99.50", updated_at="2026-11-07T09:00:00Z")])
    world.validate()
    third = _window(db, erp)
    assert third.status == "completed", third.message
    assert third.counts["expense_line_reversal_planned"] == 1
    assert third.counts["expense_line_post_planned"] == 1
    lines = erp.read_expense_lines(*FAR).set_index("external_id")
    rev = lines.loc["exp:X1:v1:rev"]
    assert (rev["kind"], rev["reverses_external_id"]) == ("reversal", "exp:X1:v1:post")
    assert rev[["amount", "tax_amount", "rebill_amount"]].tolist() == [
        D("-120.00"),
        D("-10.00"),
        D("-132.00"),
    ]
    assert lines.loc["exp:X1:v2:post", "amount"] == D("99.50")
    assert _balance(erp, refs.expense_account) == D("139.50")
    posted = ledger(db, "expense_ledger")
    assert set(posted.loc[posted["state"] == "confirmed", "external_id"]) == set(lines.index)

    # Reconciled against Tryton: every field Tryton gives back agrees with staging.
    from reconciliation.compare import Period, reconcile

    rec = reconcile(db, erp, Period(dt.date(2026, 11, 1), dt.date(2026, 11, 30)))
    assert rec.expenses.set_index("expense_id")["class"].to_dict() == {
        "X1": "in_sync",
        "X2": "in_sync",
    }
    assert rec.amounts("variance", kind="expense_total") == {"USD": D("0.00")}
    assert rec.amounts("erp", kind="expense_total") == {"USD": D("139.50")}


def test_a_closed_month_books_the_expense_into_the_next_open_one(
    tryton_host: TrytonHost, tmp_path: Path
) -> None:
    erp = tryton_host.fresh_target()
    (october,) = erp.rpc.model(
        "account.period",
        "search",
        [("type", "=", "standard"), ("start_date", "=", dt.date(2026, 10, 1))],
        0,
        1,
        None,
    )
    erp.rpc.model("account.period", "close", [october])
    db = StagingDB(f"duckdb:///{tmp_path / 'staging.duckdb'}")
    db.init_schema()
    world = World(db, tmp_path)
    _master(world)
    world.land("expenses", [expense(expense_date="2026-10-30")])
    world.validate()
    result = _window(db, erp)
    assert result.status == "completed" and result.counts["confirmed"] == 1, result.message
    line = erp.read_expense_lines(*FAR).iloc[0]
    assert (line["period"], line["expense_date"]) == ("2026-11", dt.date(2026, 10, 30))
    assert ledger(db, "expense_ledger")["erp_message"].iloc[0] == (
        f"Booked in 2026-11: period 2026-10 is closed for {LEGAL_ENTITY}"
    )
