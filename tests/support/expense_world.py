"""Expense rows for the tests: a consistent base row, landed through the real pipeline."""

from __future__ import annotations

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
