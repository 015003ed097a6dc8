"""Revenue against the ERP (docs/revenue.md): recognized revenue by project and period in
staging (`revenue_recognized`) against the ERP's revenue journals, and a WIP roll-forward per
project and period (opening + recognized - billed = closing) from the ERP's journals and
invoices, tied to staging's WIP.

The ERP's revenue is compared *to date*: a closed period keeps what it was posted with, and a
later change lands in the next open period, so a closed period's own figure may differ while
the totals to date agree from the period that caught it up on. Vectorised pandas over small
frames (one row per project and period).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pandas as pd

from connectors.erp.base import ErpError, ErpTarget
from staging_models.db import StagingDB

#: The revenue sheet's columns, in order, and their headers.
REVENUE_HEADERS: dict[str, str] = {
    "status": "Status",
    "legal_entity": "Legal entity",
    "project_code": "Project",
    "period": "Period",
    "currency": "Currency",
    "method": "Method",
    "percent_complete": "Percent complete",
    "staging_recognized_to_date": "Recognized to date (staging)",
    "erp_recognized_to_date": "Recognized to date (ERP journals)",
    "revenue_diff": "Revenue difference (staging - ERP)",
    "opening_wip": "Opening WIP (ERP)",
    "erp_recognized": "Recognized in period (ERP)",
    "erp_billed": "Billed in period (ERP invoices)",
    "closing_wip": "Closing WIP (ERP)",
    "staging_wip": "WIP (staging)",
    "wip_diff": "WIP difference (staging - ERP)",
}
TIES = "ties"
CAUGHT_UP = "closed period: caught up in a later period"
DIFFERS = "differs"

_ZERO = Decimal("0.00")


def _by_project_period(frame: pd.DataFrame, value: str) -> pd.Series:
    if frame.empty:
        return pd.Series(dtype=object)
    return frame.groupby(["project_code", "period"])[value].apply(lambda s: sum(s, _ZERO))


def revenue_rollforward(
    recognized: pd.DataFrame, journal_lines: pd.DataFrame, invoices: pd.DataFrame
) -> pd.DataFrame:
    """One row per project and period of `recognized` (`revenue_recognized`'s columns): the
    ERP's revenue to date (revenue journals' revenue lines, credit - debit) against staging's,
    and the WIP roll-forward from the ERP (`journal_lines`: `JOURNAL_READ_COLUMNS` with
    `line_role`; `invoices`: `INVOICE_COLUMNS`, posts and credit notes)."""
    if recognized.empty:
        return pd.DataFrame(columns=list(REVENUE_HEADERS))
    rev = journal_lines[
        (journal_lines["journal_type"] == "revenue") & (journal_lines["line_role"] == "revenue")
    ]
    rev = rev.assign(amount=[c - d for c, d in zip(rev["credit"], rev["debit"], strict=True)])
    billed = invoices.assign(
        period=pd.to_datetime(invoices["issue_date"]).dt.strftime("%Y-%m"),
        amount=invoices["total_amount"],
    )
    out = recognized.sort_values(["project_code", "period"]).reset_index(drop=True)
    key = pd.MultiIndex.from_frame(out[["project_code", "period"]])
    out["erp_recognized"] = _by_project_period(rev, "amount").reindex(key).fillna(_ZERO).values
    out["erp_billed"] = _by_project_period(billed, "amount").reindex(key).fillna(_ZERO).values
    # Before the first period shown: whatever the ERP holds earlier counts in the opening.
    first = out.groupby("project_code")["period"].transform("min")
    earlier_rev = rev.merge(out[["project_code"]].drop_duplicates(), on="project_code")
    opening_rev = _before(earlier_rev, out, first)
    earlier_bill = billed.merge(out[["project_code"]].drop_duplicates(), on="project_code")
    opening_bill = _before(earlier_bill, out, first)
    g = out.groupby("project_code")
    out["erp_recognized_to_date"] = [
        o + c for o, c in zip(opening_rev, _cumsum(g, "erp_recognized"), strict=True)
    ]
    billed_to_date = [o + c for o, c in zip(opening_bill, _cumsum(g, "erp_billed"), strict=True)]
    out["closing_wip"] = [
        r - b for r, b in zip(out["erp_recognized_to_date"], billed_to_date, strict=True)
    ]
    out["opening_wip"] = [
        c - r + b
        for c, r, b in zip(
            out["closing_wip"], out["erp_recognized"], out["erp_billed"], strict=True
        )
    ]
    out["staging_recognized_to_date"] = out["recognized_to_date"]
    out["staging_wip"] = out["wip"]
    out["revenue_diff"] = [
        s - e for s, e in zip(out["recognized_to_date"], out["erp_recognized_to_date"], strict=True)
    ]
    out["wip_diff"] = [s - e for s, e in zip(out["wip"], out["closing_wip"], strict=True)]
    # A difference that is gone by the project's last period was caught up there.
    last_diff = out.groupby("project_code")["revenue_diff"].transform("last")
    ok = (out["revenue_diff"] == 0) & (out["wip_diff"] == 0)
    out["status"] = DIFFERS
    out.loc[ok, "status"] = TIES
    out.loc[~ok & (last_diff == 0), "status"] = CAUGHT_UP
    return out[list(REVENUE_HEADERS)]


def _cumsum(groups, col: str) -> list[Decimal]:
    """Running Decimal sums per group, in the frame's order (pandas' cumsum is float-only
    on object columns)."""
    out: dict[int, Decimal] = {}
    for _, idx in groups.groups.items():
        total = _ZERO
        for i in sorted(idx):
            total += groups.obj.at[i, col]
            out[i] = total
    return [out[i] for i in range(len(groups.obj))]


def _before(facts: pd.DataFrame, rows: pd.DataFrame, first: pd.Series) -> list[Decimal]:
    """Per row: the sum of `facts.amount` of its project in periods before its first row."""
    if facts.empty:
        return [_ZERO] * len(rows)
    firsts = rows.assign(first=first).groupby("project_code")["first"].min()
    early = facts[facts["period"] < facts["project_code"].map(firsts)]
    sums = early.groupby("project_code")["amount"].apply(lambda s: sum(s, _ZERO))
    return [sums.get(p, _ZERO) for p in rows["project_code"]]


def read_revenue_rollforward(
    db: StagingDB, erp: ErpTarget, legal_entity: str | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """The roll-forward of everything `revenue_recognized` holds (one legal entity, or all),
    read from the ERP; and notes (what could not be compared)."""
    where = "" if legal_entity is None else " WHERE legal_entity = :le"
    recognized = db.query_df(
        f"SELECT * FROM revenue_recognized{where} ORDER BY project_code, period",
        {"le": legal_entity} if legal_entity else None,
    )
    if recognized.empty:
        return pd.DataFrame(columns=list(REVENUE_HEADERS)), []
    hi = date(2999, 12, 31)
    try:
        lines = erp.read_journal_lines(date(1900, 1, 1), hi)
    except ErpError as e:
        return pd.DataFrame(columns=list(REVENUE_HEADERS)), [
            f"Revenue not compared with the ERP: {e}"
        ]
    invoices = erp.read_invoices(date(1900, 1, 1), hi)
    out = revenue_rollforward(recognized, lines, invoices)
    notes = []
    n = int((out["status"] == DIFFERS).sum())
    if n:
        notes.append(f"Revenue: {n} project-period rows differ from the ERP (Revenue sheet).")
    return out, notes
