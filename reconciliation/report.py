"""The controllers' reconciliation workbook, built from the stored reconciliation results.

Works from the frames as they sit in staging (`rec_kpis`, `rec_totals`, `rec_invoices`,
`rec_lines`), not from a live `Reconciliation`, so a workbook can be written (again, or
per legal entity) without reconciling again. Layout: `workbook.write_workbook`'s summary
(period, key figures, how posted totals tie to the ERP, totals per legal entity and
currency, aging chart), then one sheet per exception class of entries (its own columns,
reason first: `sheet_columns`), the invoice exceptions (drafts are none), and every total.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconciliation.compare import (
    ALL,
    ENTRY_CLASSES,
    EXCEPTION_CLASSES,
    EXPENSE_CLASSES,
    INVOICE_CLASSES,
    kpi_amounts,
)
from reconciliation.intercompany import (
    CURRENCY_TOTAL_HEADERS,
    FX_MISSING_HEADERS,
    IC_BALANCE_HEADERS,
    INTERCOMPANY_HEADERS,
)
from reconciliation.plan_report import PlanSheets
from reconciliation.revenue import REVENUE_HEADERS
from reconciliation.sheet_columns import (
    CLASS_COLUMNS,
    CLASS_REASONS,
    EXPENSE_COLUMNS,
    EXPENSE_TOTAL_COLUMNS,
    HEADERS,
    INVOICE_CLASS_TITLES,
    INVOICE_COLUMNS,
    NOT_EXPENSE_EXCEPTIONS,
    NOT_INVOICE_EXCEPTIONS,
)
from reconciliation.workbook import AGING_BUCKETS, WorkbookInfo, write_workbook
from staging_models import desk_breaches
from staging_models.figures import rate

#: Sheet titles of the entry classes (Excel allows 31 characters).
CLASS_TITLES: dict[str, str] = {
    "erp_unknown_to_staging": "ERP unknown to staging",
    "not_yet_staged": "Not yet staged",
    "posted_missing_in_erp": "Posted, missing in ERP",
    "changed_in_psa_since_posting": "Changed in PSA since posting",
    "value_mismatch": "Value mismatch",
    "deleted_in_psa": "Deleted in PSA",
    "quarantined": "Quarantined",
    "quarantined_without_key": "Quarantined, no key or date",
    "approved_not_posted": "Approved, not posted",
    "not_postable": "Not postable",
    "in_sync": "In sync",
}
#: What a class counts, when not entries: rows without a key are no entries.
CLASS_UNITS: dict[str, str] = {"quarantined_without_key": "Rows"}
INVOICE_SHEET = "Invoice exceptions"
EXPENSE_SHEET = "Expense exceptions"
EXPENSE_TOTALS_SHEET = "Expense totals"
TOTALS_SHEET = "Totals by dimension"
REVENUE_SHEET = "Revenue"
INTERCOMPANY_SHEET = "Intercompany"
IC_BALANCE_SHEET = "Intercompany balance"
CURRENCY_TOTALS_SHEET = "Currency totals"
FX_MISSING_SHEET = "FX missing"


def _figures(kpis: pd.DataFrame, legal_entity: str) -> pd.DataFrame:
    return kpis[kpis["legal_entity"] == legal_entity]


def _get(k: pd.DataFrame, kind: str, name: str, col: str):
    """A figure over all currencies (the row without a currency)."""
    row = k[(k["kind"] == kind) & (k["name"] == name) & k["currency"].isna()]
    if row.empty:
        return 0 if col == "entries" else None
    value = row.iloc[0][col]
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def _amounts(
    kpis: pd.DataFrame, legal_entity: str, name: str, label: str
) -> list[tuple[str, object]]:
    """One line per currency: amounts of different currencies are never added."""
    return [
        (f"{label} ({cur})", amount)
        for cur, amount in kpi_amounts(kpis, "kpi", name, legal_entity).items()
    ]


def key_figures(
    kpis: pd.DataFrame,
    legal_entity: str,
    period_label: str,
    breaches: pd.DataFrame | None = None,
) -> list[tuple[str, object]]:
    """The summary's key figures, in reading order. Counts say what they count (entries,
    rows, invoices, lines); amounts come one line per currency; the rate reads as in the UI.
    `breaches` (`staging_models.desk_breaches`): the desk's open exceptions and those past
    their due date, counted for the workbook's legal entity."""
    k = _figures(kpis, legal_entity)
    approved = _get(k, "kpi", "approved_entries", "entries")
    straight = _get(k, "kpi", "straight_through_entries", "entries")
    out: list[tuple[str, object]] = [
        ("Period", period_label),
        ("Legal entity", "all in scope" if legal_entity == ALL else legal_entity),
        ("Approved entries in period", approved),
        ("Posted straight through", straight),
        ("Straight-through rate", rate(int(straight), int(approved))),
        ("Approved, not posted: entries", _get(k, "kpi", "approved_not_posted", "entries")),
        ("Approved, not posted: hours", _get(k, "kpi", "approved_not_posted", "hours")),
        *_amounts(kpis, legal_entity, "approved_not_posted", "Approved, not posted: amount"),
        (
            "Invoice-ready backlog: invoices",
            _get(k, "kpi", "invoice_ready_backlog_invoices", "entries"),
        ),
        ("Invoice-ready backlog: lines", _get(k, "kpi", "invoice_ready_backlog_lines", "entries")),
        *_amounts(
            kpis, legal_entity, "invoice_ready_backlog_lines", "Invoice-ready backlog: amount"
        ),
    ]
    out += [
        (f"{CLASS_UNITS.get(c, 'Entries')}: {CLASS_TITLES[c]}", _get(k, "class", c, "entries"))
        for c in ENTRY_CLASSES
    ]
    out += [
        (f"Invoices: {INVOICE_CLASS_TITLES[c]}", _get(k, "invoice_class", c, "entries"))
        for c in INVOICE_CLASSES
    ]
    out += [
        (f"Expenses: {CLASS_TITLES[c]}", _get(k, "expense_class", c, "entries"))
        for c in EXPENSE_CLASSES
    ]
    reasons = k[(k["kind"] == "reason") & k["currency"].isna()].sort_values("name")
    out += [
        (f"Rows quarantined for {r}", int(n))
        for r, n in zip(reasons["name"], reasons["entries"], strict=True)
    ]
    if breaches is not None:
        open_, overdue = desk_breaches.totals(
            breaches, None if legal_entity == ALL else legal_entity
        )
        out += [
            ("Exceptions open on the desk", open_),
            ("Exceptions past their due date (breaches)", overdue),
        ]
    return out


def aging_table(kpis: pd.DataFrame, legal_entity: str) -> pd.DataFrame:
    """Approved-but-unposted hours and amounts per age bucket (all four, zeros included):
    hours over all currencies, then one amount column per currency (`amount USD`)."""
    k = _figures(kpis, legal_entity)
    aging = k[k["kind"] == "aging"]
    a = aging[aging["currency"].isna()].set_index("name")
    table = pd.DataFrame(
        {
            "bucket": list(AGING_BUCKETS),
            "hours": [_zero(a, b, "hours", Decimal("0.0000")) for b in AGING_BUCKETS],
        }
    )
    for cur in sorted(set(aging["currency"].dropna())):
        c = aging[aging["currency"] == cur].set_index("name")
        table[f"amount {cur}"] = [_zero(c, b, "amount", Decimal("0.00")) for b in AGING_BUCKETS]
    return table


def _zero(a: pd.DataFrame, bucket: str, col: str, zero: Decimal) -> Decimal:
    if bucket not in a.index or a.loc[bucket, col] is None:
        return zero
    return a.loc[bucket, col]


def _filter_le(frame: pd.DataFrame, legal_entity: str) -> pd.DataFrame:
    return frame if legal_entity == ALL else frame[frame["legal_entity"] == legal_entity]


def _rules_broken(rule_codes: pa.ChunkedArray) -> pa.ChunkedArray:
    """How many rules each row breaks (its comma-separated rule codes), null without any."""
    return pc.list_value_length(pc.split_pattern(rule_codes, ","))


def _class_sheet(lines: pa.Table, cls: str) -> pa.Table:
    rows = lines.filter(pc.equal(lines["class"], cls))
    reasons = pc.fill_null(rows["reasons"], CLASS_REASONS[cls])
    rows = rows.set_column(rows.column_names.index("reasons"), "reasons", reasons)
    columns = CLASS_COLUMNS[cls]
    if "rules_broken" in columns:
        rows = rows.append_column("rules_broken", _rules_broken(rows["rule_codes"]))
    return rows.select(list(columns))


def multi_rule_note(lines: pa.Table) -> str | None:
    """Why the rule figures add up to more than the quarantined rows: a row counts under
    every rule it breaks. None when no row breaks more than one."""
    q = lines.filter(
        pc.and_(pc.equal(lines["psa_state"], "quarantined"), pc.is_valid(lines["rule_codes"]))
    )
    if q.num_rows == 0:
        return None
    broken = _rules_broken(q["rule_codes"])
    several = pc.sum(pc.greater(broken, 1)).as_py() or 0
    if not several:
        return None
    total = pc.sum(broken).as_py()
    return (
        f"{q.num_rows:,} quarantined rows break {total:,} rules in all: a row that breaks "
        f"several rules counts under each of them in 'Rows quarantined for ...' "
        f"({several:,} rows break more than one; see 'Number of rules broken' on the "
        "quarantine sheets)."
    )


def _money(value: object) -> str:
    return f"{Decimal(str(value)):,.2f}"


def _hours(value: object) -> str:
    return f"{Decimal(str(value)).normalize():f}"


def tie_out_notes(per_le: pd.DataFrame) -> list[str]:
    """Per legal entity and currency: do the posted totals (confirmed in the ledger) tie to
    the ERP? Said in words, with the variances when they do not."""
    out = []
    for r in per_le.sort_values(["legal_entity", "currency"]).itertuples(index=False):
        posted = f"posted {_hours(r.ledger_hours)} h, {_money(r.ledger_amount)} {r.currency}"
        erp = f"ERP {_hours(r.erp_hours)} h, {_money(r.erp_amount)} {r.currency}"
        if r.variance_ledger_erp_hours == 0 and r.variance_ledger_erp_amount == 0:
            verdict = "ties"
        else:
            verdict = (
                f"does not tie: {_hours(r.variance_ledger_erp_hours)} h, "
                f"{_money(r.variance_ledger_erp_amount)} {r.currency} (see the exception sheets)"
            )
        out.append(f"{r.legal_entity} {r.currency}: {posted}; {erp}: {verdict}.")
    return out


def write_reconciliation_workbook(
    path: Path,
    *,
    period_label: str,
    kpis: pd.DataFrame,
    totals: pd.DataFrame,
    invoices: pd.DataFrame,
    lines: pa.Table,
    notes: list[str] | None = None,
    legal_entity: str = ALL,
    generated_at: datetime | None = None,
    breaches: pd.DataFrame | None = None,
    expenses: pd.DataFrame | None = None,
    revenue: pd.DataFrame | None = None,
    plan: PlanSheets | None = None,
    intercompany: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    currencies: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> WorkbookInfo:
    """Write one reconciliation workbook (for all legal entities in scope, or one of them);
    with `breaches`, its key figures count the desk's open and overdue exceptions; with
    `expenses` (`Reconciliation.expenses`), the expense exceptions and totals; with
    `revenue` (`reconciliation.revenue.revenue_rollforward`), a Revenue sheet; with `plan`
    (`reconciliation.plan_report`), its plan-vs-actual figures and sheets follow; with
    `intercompany` (`reconciliation.intercompany.intercompany_reconciliation`: entry sides and
    the balance per legal entity) and `currencies` (`currency_totals`: totals per transaction
    currency, in the group currency where rates exist, and the lines without a rate), their
    sheets."""
    totals = _filter_le(totals, legal_entity)
    invoices = _filter_le(invoices, legal_entity)
    if legal_entity != ALL:
        lines = lines.filter(pc.equal(lines["legal_entity"], legal_entity))
    per_le = totals[totals["dimension"] == "legal_entity"].drop(columns=["dimension", "member"])
    notes = [*tie_out_notes(per_le), *(notes or [])]
    rule_note = multi_rule_note(lines)
    if rule_note:
        notes.append(rule_note)
    sheets: dict[str, pd.DataFrame | pa.Table] = {}
    for cls in EXCEPTION_CLASSES:
        sheets[CLASS_TITLES[cls]] = _class_sheet(lines, cls)
    exceptions = invoices[~invoices["class"].isin(NOT_INVOICE_EXCEPTIONS)]
    exceptions = exceptions.assign(
        **{"class": exceptions["class"].map(INVOICE_CLASS_TITLES).fillna(exceptions["class"])}
    )
    sheets[INVOICE_SHEET] = exceptions[list(INVOICE_COLUMNS)]
    if expenses is not None:
        sheets.update(expense_sheets(expenses, kpis, legal_entity))
    sheets[TOTALS_SHEET] = totals
    if revenue is not None and not revenue.empty:
        sheets[REVENUE_SHEET] = _filter_le(revenue, legal_entity)
    if currencies is not None:
        totals_by_currency, fx_missing = currencies
        sheets[CURRENCY_TOTALS_SHEET] = _filter_le(totals_by_currency, legal_entity)
        if not fx_missing.empty:
            sheets[FX_MISSING_SHEET] = _filter_le(fx_missing, legal_entity)
    if intercompany is not None and not intercompany[0].empty:
        sheets[INTERCOMPANY_SHEET] = _filter_le(intercompany[0], legal_entity)
        sheets[IC_BALANCE_SHEET] = _filter_le(intercompany[1], legal_entity)
    figures = key_figures(kpis, legal_entity, period_label, breaches)
    headers = {  # the shared columns keep their headers
        **CURRENCY_TOTAL_HEADERS,
        **FX_MISSING_HEADERS,
        **IC_BALANCE_HEADERS,
        **INTERCOMPANY_HEADERS,
        **REVENUE_HEADERS,
        **HEADERS,
    }
    if plan is not None:
        sheets.update(plan.sheets)
        figures += plan.key_figures
        headers = {**plan.headers, **headers}
    scope = "all legal entities" if legal_entity == ALL else legal_entity
    return write_workbook(
        path,
        title=f"Reconciliation PSA / staging / ERP: {scope}",
        period=period_label,
        headers=headers,
        charts=plan.charts if plan is not None else None,
        kpis=figures,
        totals=per_le,
        aging=aging_table(kpis, legal_entity),
        sheets=sheets,
        notes=notes,
        generated_at=generated_at,
    )


def expense_totals(kpis: pd.DataFrame, legal_entity: str = ALL) -> pd.DataFrame:
    """Expense amounts per legal entity and currency in staging (valid), the ledger
    (confirmed), the ERP, their variance and the rebilled amounts (`EXPENSE_TOTAL_COLUMNS`),
    from the key figures (`expense_total`); `legal_entity`: one, or every one ('(all)')."""
    k = kpis[(kpis["kind"] == "expense_total") & kpis["currency"].notna()]
    k = k[k["legal_entity"] != ALL] if legal_entity == ALL else k[k["legal_entity"] == legal_entity]
    if k.empty:
        return pd.DataFrame(columns=list(EXPENSE_TOTAL_COLUMNS))
    wide = k.pivot_table(
        index=["legal_entity", "currency"], columns="name", values="amount", aggfunc="first"
    ).reset_index()
    for col in EXPENSE_TOTAL_COLUMNS:
        if col not in wide:
            wide[col] = Decimal("0.00")
    return wide[list(EXPENSE_TOTAL_COLUMNS)].sort_values(["legal_entity", "currency"])


def expense_sheets(
    expenses: pd.DataFrame, kpis: pd.DataFrame, legal_entity: str = ALL
) -> dict[str, pd.DataFrame]:
    """The expense exceptions (in-sync and not-postable expenses are none) and the expense
    totals."""
    expenses = _filter_le(expenses, legal_entity)
    exceptions = expenses[~expenses["class"].isin(NOT_EXPENSE_EXCEPTIONS)]
    exceptions = exceptions.assign(
        **{"class": exceptions["class"].map(CLASS_TITLES).fillna(exceptions["class"])}
    )
    return {
        EXPENSE_SHEET: exceptions[list(EXPENSE_COLUMNS)],
        EXPENSE_TOTALS_SHEET: expense_totals(kpis, legal_entity),
    }
