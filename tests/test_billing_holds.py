"""Billing holds (issue 16 item 2): a project on a hold keeps its invoices from the ERP; they
show as held with reason and age in the window's result and the reconciliation; the first
window after the hold is lifted posts them. DuckDB and PostgreSQL staging, SQL target."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from reconciliation.compare import Period, reconcile
from tests.support.expense_world import ExpenseEnv, expense
from tests.support.feedback_helpers import set_project
from tests.support.posting_helpers import PostingEnv, ledger, stage_entries, stage_invoice

pytest_plugins = ["tests.support.posting_fixtures", "tests.support.expense_fixtures"]

D = Decimal
NOW = datetime(2026, 12, 10, 18, 0, tzinfo=UTC)
SINCE = date(2026, 12, 1)


def _erp_invoice_ids(env: PostingEnv) -> set[str]:
    frame = env.erp.read_invoices(date(2026, 1, 1), date(2026, 12, 31))
    return set(frame["external_id"])


def test_a_hold_stops_the_invoice_and_a_release_posts_it(posting_env: PostingEnv) -> None:
    env = posting_env
    set_project(env.db, "P1", hold=True, reason="Disputed scope", since=SINCE)
    set_project(env.db, "P2")
    stage_entries(env.db, [{"entry_id": "TE1"}, {"entry_id": "TE2", "project_code": "P2"}])
    stage_invoice(env.db, "I1", [{"line_no": 1, "amount": D("750.00")}])
    stage_invoice(env.db, "I2", [{"line_no": 1}], project_code="P2")

    held = env.window()
    assert held.status == "completed"
    # Time lines post (default policy); I1 waits, I2 of the project without a hold posts.
    assert {r for r in ledger(env.db)["state"]} == {"confirmed"}
    inv = ledger(env.db, "invoice_ledger").set_index("invoice_id")
    assert inv.loc["I1", "state"] == "held" and inv.loc["I2", "state"] == "confirmed"
    assert inv.loc["I1", "erp_message"] == (
        "Billing hold on project P1 since 2026-12-01: Disputed scope"
    )
    assert _erp_invoice_ids(env) == {"inv:I2:v1:post"}
    # The window's result names it, with reason and age (since the later of issue date
    # 2026-11-30 and the hold's 2026-12-01).
    h = held.held_invoices
    assert h["invoice_id"].tolist() == ["I1"]
    assert h.loc[0, "reason"].endswith("Disputed scope")
    assert h.loc[0, "held_since"] == SINCE and h.loc[0, "total_amount"] == D("750.00")
    assert h.loc[0, "age_days"] == (datetime.now(UTC).date() - SINCE).days
    assert held.counts["invoice_post_held"] == 1
    assert "1 invoice documents held" in held.message

    # The reconciliation shows it as held, with the reason and the invoice's age.
    rec = reconcile(env.db, env.erp, Period(date(2026, 11, 1), date(2026, 11, 30), ()), now=NOW)
    invoices = rec.invoices.set_index("invoice_id")
    assert invoices.loc["I1", "class"] == "billing_hold"
    assert (
        "Billing hold on project P1 since 2026-12-01: Disputed scope"
        in (invoices.loc["I1", "reasons"])
    )
    assert invoices.loc["I1", "age_days"] == 10  # issued 2026-11-30, now 2026-12-10
    assert invoices.loc["I2", "class"] == "in_sync"

    # Still held while the hold stands; the next window after the release posts it.
    assert env.window().held_invoices["invoice_id"].tolist() == ["I1"]
    set_project(env.db, "P1", hold=False)
    released = env.window()
    assert released.held_invoices.empty
    assert _erp_invoice_ids(env) == {"inv:I1:v1:post", "inv:I2:v1:post"}
    assert ledger(env.db, "invoice_ledger").set_index("invoice_id").loc["I1", "state"] == (
        "confirmed"
    )
    rec = reconcile(env.db, env.erp, Period(date(2026, 11, 1), date(2026, 11, 30), ()), now=NOW)
    assert rec.invoices.set_index("invoice_id").loc["I1", "class"] == "in_sync"


def test_time_lines_hold_too_when_configured(posting_env: PostingEnv) -> None:
    env = posting_env
    set_project(env.db, "P1", hold=True, reason=None, since=None)
    stage_entries(env.db, [{"entry_id": "TE1"}, {"entry_id": "TE2", "project_code": "P2"}])
    stage_invoice(env.db, "I1", [{"line_no": 1}])
    result = env.window(billing_hold_time_and_expenses="hold")
    lines = ledger(env.db).set_index("entry_id")
    assert lines.loc["TE1", "state"] == "held" and lines.loc["TE2", "state"] == "confirmed"
    assert lines.loc["TE1", "erp_message"] == "Billing hold on project P1: no reason given"
    assert result.held_invoices["invoice_id"].tolist() == ["I1"]
    set_project(env.db, "P1", hold=False)
    env.window(billing_hold_time_and_expenses="hold")
    assert set(ledger(env.db)["state"]) == {"confirmed"}


def test_a_credit_note_of_a_held_project_waits_too(posting_env: PostingEnv) -> None:
    """An invoice posted before the hold, then cancelled in the PSA: its credit note is an
    invoice document of the held project, so it waits for the release as well."""
    env = posting_env
    stage_entries(env.db, [{"entry_id": "TE1"}])
    stage_invoice(env.db, "I1", [{"line_no": 1}])
    env.window()
    assert _erp_invoice_ids(env) == {"inv:I1:v1:post"}
    set_project(env.db, "P1", hold=True, reason="Customer audit", since=SINCE)
    stage_invoice(env.db, "I1", [{"line_no": 1}], status="cancelled")
    result = env.window()
    assert _erp_invoice_ids(env) == {"inv:I1:v1:post"}
    assert result.held_invoices["kind"].tolist() == ["reversal"]
    set_project(env.db, "P1", hold=False)
    env.window()
    assert _erp_invoice_ids(env) == {"inv:I1:v1:post", "inv:I1:v1:rev"}


def test_expense_lines_post_through_a_hold_or_wait_with_the_time_lines(
    expense_env: ExpenseEnv,
) -> None:
    """Expense lines follow STAGEPOST_BILLING_HOLD_TIME_AND_EXPENSES as time lines do: posted
    by default; with `hold`, held with the hold's reason (a correction's two lines together)
    and posted by the first window after the release."""
    env = expense_env
    env.land(expense(), expense(expense_id="X2", receipt_ref="R-2"))
    env.hold_p1(hold=True)
    posted = env.window()  # default `post`: the hold stops billing, not cost accounting
    assert posted.counts.get("expense_line_post_held", 0) == 0
    assert set(env.erp_lines().index) == {"exp:X1:v1:post", "exp:X2:v1:post"}

    # A correction of X1 under the hold, with `hold`: both halves wait, X2's line stays.
    env.land(expense(amount="99.50", updated_at="2026-11-06T09:00:00Z"))
    held = env.window(billing_hold_time_and_expenses="hold")
    led = ledger(env.world.db, "expense_ledger").set_index("external_id")
    assert led.loc["exp:X1:v1:rev", "state"] == "held"
    assert led.loc["exp:X1:v2:post", "state"] == "held"
    assert set(led.loc[["exp:X1:v1:rev", "exp:X1:v2:post"], "erp_message"]) == {
        "Billing hold on project P1: Disputed scope"
    }
    assert held.counts["expense_line_post_held"] == 1
    assert set(env.erp_lines().index) == {"exp:X1:v1:post", "exp:X2:v1:post"}

    env.hold_p1(hold=False)
    env.window(billing_hold_time_and_expenses="hold")
    assert set(env.erp_lines().index) == {
        "exp:X1:v1:post",
        "exp:X1:v1:rev",
        "exp:X1:v2:post",
        "exp:X2:v1:post",
    }
    assert set(ledger(env.world.db, "expense_ledger")["state"]) == {"confirmed"}
