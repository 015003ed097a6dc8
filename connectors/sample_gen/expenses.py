"""Sample expenses, with bad rows of named kinds and their ground truth.

One expense per `ENTRIES_PER_EXPENSE` time entries, each claimed by the employee of a clean,
approved entry on that entry's project, task and work date (so its master data holds, as the
entry's does), approved when the entry was. Amounts are whole cents, a tax of about a tenth
and a 10 % markup on billable ones; every clean expense carries its own receipt, so none
trips the receipt rules. Bad rows replace a share of them and each breaks one rule
(`EXPENSE_BAD_RULES`); kinds are dealt round-robin. Vectorised: numpy and Arrow columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.sample_gen.strings import fmt_bool, fmt_cents, fmt_ids, take

ENTRIES_PER_EXPENSE = 20
CATEGORIES = ("travel", "lodging", "meals", "mileage", "transport", "software", "supplies")
DESCRIPTIONS = (
    "Train to the client",
    "Hotel, one night",
    "Lunch with the client team",
    "Mileage to the site",
    "Taxi from the airport",
    "Licence for the engagement",
    "Printing and binding",
)

#: Each kind of bad expense row and the rule it breaks (what validation must quarantine it for).
EXPENSE_BAD_RULES: dict[str, str] = {
    "unknown_category": "EXP_CATEGORY_UNKNOWN",
    "amount_not_positive": "EXP_AMOUNT_NOT_POSITIVE",
    "amount_fraction_of_cent": "EXP_AMOUNT_FORMAT",
    "expense_currency_mismatch": "EXP_CURRENCY_MISMATCH",
    "missing_receipt": "EXP_RECEIPT_MISSING",
    "duplicate_receipt": "EXP_RECEIPT_DUPLICATE",
    "expense_unknown_project": "EXP_UNKNOWN_PROJECT",
    "missing_expense_id": "EXP_KEY_MISSING",
}
EXPENSE_BAD_KINDS: tuple[str, ...] = tuple(EXPENSE_BAD_RULES)


@dataclass
class SampleExpenses:
    table: pa.Table  # the canonical expense columns, strings
    bad_rows: pa.Table  # row_index, expense_id, kind


def build_expenses(
    entries: pa.Table, rng: np.random.Generator, bad_share: float, share_count
) -> SampleExpenses:
    """Expenses claimed against `entries` (formatted clean, approved time entries)."""
    n = len(entries)
    no = np.arange(1, n + 1, dtype=np.int64)
    cents = rng.integers(500, 40_000, n)
    cat = rng.integers(0, len(CATEGORIES), n)
    billable = np.asarray(pc.equal(entries["billable"], "true").to_numpy(zero_copy_only=False))
    cols = {
        "expense_id": fmt_ids("EX", no, 9),
        "employee_id": entries["employee_id"],
        "project_code": entries["project_code"],
        "task_code": entries["task_code"],
        "expense_date": entries["work_date"],
        "category": take(CATEGORIES, cat),
        "amount": fmt_cents(cents),
        "currency": entries["currency"],
        "tax_amount": fmt_cents(cents // 11),
        "billable": fmt_bool(billable),
        "reimbursable": fmt_bool(rng.random(n) < 0.8),
        "markup_percent": pa.array(np.where(billable, "10", "0"), pa.string()),
        "receipt_ref": fmt_ids("RC-", no, 9),
        "approval_status": entries["approval_status"],
        "approved_at": entries["approved_at"],
        "approved_by": entries["approved_by"],
        "description": take(DESCRIPTIONS, cat),
        "updated_at": entries["updated_at"],
        "deleted": fmt_bool(np.zeros(n, bool)),
    }
    n_bad = min(share_count(n, bad_share), max(n - 1, 0))
    # Row 0 stays clean: its receipt is the one a duplicate_receipt row claims again (its id
    # sorts first, so it is the first claim).
    rows = np.sort(rng.choice(np.arange(1, n), n_bad, replace=False)) if n_bad else np.zeros(0, int)
    kinds = np.arange(n_bad) % len(EXPENSE_BAD_KINDS)
    for k, kind in enumerate(EXPENSE_BAD_KINDS):
        r = rows[kinds == k]
        if len(r):
            for name, value in _mutation(kind, cols, r).items():
                cols[name] = _put(cols[name], r, value)
    table = pa.table(cols)
    truth = pa.table(
        {
            "row_index": pa.array(rows, pa.int64()),
            "expense_id": cols["expense_id"].take(pa.array(rows, pa.int64())),
            "kind": take(EXPENSE_BAD_KINDS, kinds),
        }
    )
    return SampleExpenses(table, truth)


def _mutation(
    kind: str, cols: dict[str, pa.Array], r: np.ndarray
) -> dict[str, pa.Array | str | None]:
    """The values a bad row of `kind` gets (a column -> one value, or one per row of `r`)."""
    at = pa.array(r, pa.int64())
    if kind == "unknown_category":
        return {"category": "golf"}
    if kind == "amount_not_positive":
        return {"amount": "0.00", "tax_amount": "0.00"}
    if kind == "amount_fraction_of_cent":
        return {"amount": pc.binary_join_element_wise(cols["amount"].take(at), "5", "")}
    if kind == "expense_currency_mismatch":
        chf = pc.equal(cols["currency"].take(at), "CHF")
        return {"currency": pc.if_else(chf, "SEK", "CHF")}
    if kind == "missing_receipt":
        return {"amount": "250.00", "tax_amount": "0.00", "receipt_ref": None}
    if kind == "duplicate_receipt":
        return {"receipt_ref": cols["receipt_ref"][0].as_py()}
    if kind == "expense_unknown_project":
        return {"project_code": "NOPROJECT"}
    if kind == "missing_expense_id":
        return {"expense_id": None}
    raise ValueError(kind)


def _put(col: pa.Array, rows: np.ndarray, value: pa.Array | str | None) -> pa.Array:
    """`col` with the values at `rows` (sorted) replaced by `value`."""
    mask = np.zeros(len(col), bool)
    mask[rows] = True
    if not isinstance(value, pa.Array | pa.ChunkedArray):
        value = pa.array([value] * len(rows), pa.string())
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    return pc.replace_with_mask(col, pa.array(mask), value.cast(pa.string()))
