"""The controllers' reconciliation workbook, built from the stored reconciliation results.

Works from the frames as they sit in staging (`rec_kpis`, `rec_totals`, `rec_invoices`,
`rec_lines`), not from a live `Reconciliation`, so a workbook can be written (again, or
per legal entity) without reconciling again. Layout: `workbook.write_workbook`'s summary
(key figures, totals per legal entity and currency, aging chart), then one sheet per
exception class of entries, the invoice exceptions, and every total.
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
    INVOICE_CLASSES,
    kpi_amounts,
)
from reconciliation.workbook import AGING_BUCKETS, WorkbookInfo, write_workbook
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
TOTALS_SHEET = "Totals by dimension"


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
    kpis: pd.DataFrame, legal_entity: str, period_label: str
) -> list[tuple[str, object]]:
    """The summary's key figures, in reading order. Counts say what they count (entries,
    rows, invoices, lines); amounts come one line per currency; the rate reads as in the UI."""
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
        (f"Invoices: {c.replace('_', ' ')}", _get(k, "invoice_class", c, "entries"))
        for c in INVOICE_CLASSES
    ]
    reasons = k[(k["kind"] == "reason") & k["currency"].isna()].sort_values("name")
    out += [
        (f"Rows quarantined for {r}", int(n))
        for r, n in zip(reasons["name"], reasons["entries"], strict=True)
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
) -> WorkbookInfo:
    """Write one reconciliation workbook (for all legal entities in scope, or one of them)."""
    totals = _filter_le(totals, legal_entity)
    invoices = _filter_le(invoices, legal_entity)
    if legal_entity != ALL:
        lines = lines.filter(pc.equal(lines["legal_entity"], legal_entity))
    notes = list(notes or [])
    per_le = totals[totals["dimension"] == "legal_entity"].drop(columns=["dimension", "member"])
    sheets: dict[str, pd.DataFrame | pa.Table] = {}
    detail = [c for c in lines.column_names if c != "class"]
    for cls in EXCEPTION_CLASSES:
        rows = lines.filter(pc.equal(lines["class"], cls)).select(detail)
        sheets[CLASS_TITLES[cls]] = rows
    sheets[INVOICE_SHEET] = invoices[invoices["class"] != "in_sync"].drop(columns=["backlog"])
    sheets[TOTALS_SHEET] = totals
    scope = "all legal entities" if legal_entity == ALL else legal_entity
    return write_workbook(
        path,
        title=f"Reconciliation PSA / staging / ERP: {scope}",
        kpis=key_figures(kpis, legal_entity, period_label),
        totals=per_le,
        aging=aging_table(kpis, legal_entity),
        sheets=sheets,
        notes=notes,
        generated_at=generated_at,
    )
