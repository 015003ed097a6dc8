"""Expense rows for the tests: a consistent base row, landed through the real pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

from connectors.erp.sql_interface import SqlInterfaceTarget
from posting.window import RetryPolicy, WindowConfig, WindowResult, run_window
from tests.support.staging_helpers import PROJECTS, World

EXP_BASE: dict[str, str] = {
    "expense_id": "X1",
    "employee_id": "E1",
    "project_code": "P1",
    "task_code": "T1",
    "expense_date": "2026-11-04",
    "category": "Travel",
    "amount": "120.00",
    "currency": "USD",
    "tax_amount": "10.00",
    "billable": "true",
    "reimbursable": "true",
    "markup_percent": "10",
    "receipt_ref": "R-1",
    "approval_status": "approved",
    "approved_at": "2026-11-05T09:00:00+01:00",
    "approved_by": "M1",
    "description": "Train to client",
    "updated_at": "2026-11-05T09:00:00Z",
    "deleted": "false",
}


def expense(**overrides: str) -> dict[str, str]:
    """An expense row: the base row with some values replaced."""
    return {**EXP_BASE, **overrides}


@dataclass
class ExpenseEnv:
    world: World
    erp: SqlInterfaceTarget

    def land(self, *rows: dict[str, str]) -> None:
        """Land expense rows and validate everything."""
        self.world.land("expenses", list(rows))
        self.world.validate()

    def hold_p1(self, hold: bool) -> None:
        """A projects export with P1 on a billing hold (or lifted), landed and validated."""
        flag = dict(billing_hold="true", billing_hold_reason="Disputed scope")
        if not hold:
            flag = dict(billing_hold="false", billing_hold_reason="")
        rows = [{**p, **flag} if p["project_code"] == "P1" else p for p in PROJECTS]
        self.world.land("projects", rows)
        self.world.validate()

    def window(self, **config) -> WindowResult:
        config.setdefault("dry_run", False)
        config.setdefault("retry", RetryPolicy(attempts=2, base_delay=0))
        return run_window(self.world.db, self.erp, WindowConfig(**config), sleep=lambda s: None)

    def erp_lines(self) -> pd.DataFrame:
        return self.erp.read_expense_lines(date(2000, 1, 1), date(2100, 1, 1)).set_index(
            "external_id"
        )
