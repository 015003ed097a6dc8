"""Expense lines in Tryton, as journal entries (`account.move` of the expense journal).

Why a move: with the modules a stagepost Tryton runs (account, account_invoice, project,
timesheet, project_invoice) an expense claim is, in accounting terms, a cost the company
incurred and (when the employee paid it) owes back: one posted move of two lines,

- debit the expense account (the service product's category's `account_expense`) with the
  amount (tax included: the PSA's tax amount is kept on the move, not split out);
- credit, when `reimbursable`, the company's default payable account with the employee's
  party (what finance pays the employee); otherwise the clearing account the target is
  given (`expense_clearing_account`, e.g. the company card's), else the line is rejected.

The move is dated by the expense date, or by the first day of the period the plan booked
it into when that is another month (as timesheet lines' `accounting_date`), and posted, so
a closed period refuses it with Tryton's own message. A reversal is a second posted move
with debit and credit swapped and `reverses` set (Tryton's own cancel would post into the
original's period, which may be closed). What the two lines cannot say (project, employee,
category, tax, markup, rebilled amount, receipt) rides on the move in the stagepost
module's fields, so `read_expense_lines` gives every field of `EXPENSE_LINE` back; rebilling
the customer stays with the invoices the PSA proposes (line kind `expense`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd

from .base import EXPENSE_LINE_COLUMNS, ErpError, PostResult
from .tryton_rpc import TrytonUserError
from .tryton_session import (
    TASK_SEPARATOR,
    TrytonSession,
    accounting_dates,
    chunks,
    dates,
    decimals,
    document_identity,
    nested,
    records,
    reject,
)

MODEL = "account.move"
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class ExpenseRefs:
    """The journal and accounts expense moves use, read once per target."""

    journal: int
    expense_account: int
    payable_of_company: dict[int, int | None]
    clearing_account: int | None


def load_refs(session: TrytonSession, clearing_account: int | None) -> ExpenseRefs:
    rpc, refs = session.rpc, session.refs
    journals = rpc.model("account.journal", "search", [("type", "=", "expense")], 0, 1, None)
    if not journals:
        raise ErpError("Tryton has no expense journal")
    product = rpc.model(
        "product.product", "read", [refs.product], ["account_category.account_expense"]
    )[0]
    expense_account = (product.get("account_category.") or {}).get("account_expense")
    if not expense_account:
        raise ErpError("Tryton's service product has no expense account on its category")
    payable = {}
    for cid in refs.legal_entity_of:  # a company-dependent default: one read per company
        config = rpc.model(
            "account.configuration",
            "read",
            [1],
            ["default_account_payable"],
            context={"company": cid},
        )
        payable[cid] = config[0]["default_account_payable"] if config else None
    return ExpenseRefs(journals[0], expense_account, payable, clearing_account)


def post_expense_lines(
    session: TrytonSession, eref: ExpenseRefs, lines: pd.DataFrame
) -> PostResult:
    """Create and post a move per expense line (`EXPENSE_LINE_COLUMNS`); reversals after the
    moves they cancel. A move left in draft by an interrupted run is posted, not created
    twice."""
    result = PostResult()
    frame = lines[lines["external_id"].notna()].drop_duplicates("external_id")
    if frame.empty:
        return result
    known = session.lookup(MODEL, frame["external_id"], ["state"])
    result.accepted.extend(sorted(k for k, v in known.items() if v["state"] == "posted"))
    _post_drafts(session, {k: v["id"] for k, v in known.items() if v["state"] != "posted"}, result)
    fresh = frame[~frame["external_id"].isin(known)]
    is_reversal = fresh["kind"].eq("reversal")
    _create(session, eref, fresh[~is_reversal], result)
    _create(session, eref, fresh[is_reversal], result)
    return result


def _create(
    session: TrytonSession, eref: ExpenseRefs, frame: pd.DataFrame, result: PostResult
) -> None:
    if frame.empty:
        return
    refs = session.refs
    company = frame["legal_entity"].map(refs.company_of)
    employee_key = frame["employee_id"].astype(str)
    employees = pd.DataFrame.from_dict(
        session.lookup("company.employee", employee_key, ["company", "party"]),
        orient="index",
        columns=["id", "company", "party"],
    )
    # The task's work when the expense names one (as a timesheet line's), else the project's.
    work_key = (
        frame["project_code"]
        .astype(str)
        .where(
            frame["task_code"].isna(),
            frame["project_code"].astype(str) + TASK_SEPARATOR + frame["task_code"].astype(str),
        )
    )
    project = work_key.map(session.ids("project.work", work_key))
    reversal = frame["kind"].eq("reversal")
    reverses = frame["reverses_external_id"].map(
        session.ids(MODEL, frame.loc[reversal, "reverses_external_id"])
    )
    reimbursable = frame["reimbursable"].astype(bool)
    credit_account = company.map(eref.payable_of_company).where(reimbursable, eref.clearing_account)
    amount = decimals(frame["amount"])
    booked = accounting_dates(frame["period"], frame["expense_date"])
    booked = booked.where(booked.notna(), dates(frame["expense_date"]))
    period = session.period_field(company, pd.to_datetime(booked), "id")
    problems = pd.Series(
        np.select(
            [
                company.isna(),
                ~employee_key.isin(employees.index),
                project.isna(),
                employee_key.map(employees["company"]).ne(company),
                amount.isna(),
                reversal & reverses.isna(),
                ~reimbursable & credit_account.isna(),
                reimbursable & credit_account.isna(),
                period.isna(),
            ],
            [
                "no Tryton company for legal entity " + frame["legal_entity"].astype(str),
                "employee " + employee_key + " is not in Tryton",
                "project/task " + work_key + " is not in Tryton",
                "employee and legal entity belong to different Tryton companies",
                "no amount",
                "the reversed expense "
                + frame["reverses_external_id"].astype(str)
                + " is not in Tryton",
                "a company-paid expense needs a clearing account "
                "(STAGEPOST_ERP_EXPENSE_CLEARING_ACCOUNT)",
                "no default payable account for the company in Tryton",
                "no Tryton period holds " + booked.astype(str),
            ],
            default="",
        ),
        index=frame.index,
    )
    good = reject(result, problems, frame["external_id"])
    if not good.any():
        return
    frame = frame[good]
    party = employee_key[good].map(employees["party"])
    description = frame["description"].astype(object).where(frame["description"].notna(), "")
    description = (
        ("Reversal of " + frame["reverses_external_id"].astype(str) + " ").where(
            frame["kind"].eq("reversal"), ""
        )
        + "Expense "
        + frame["expense_id"].astype(str)
        + " "
        + description.astype(str)
    ).str.strip()
    payload = pd.DataFrame(
        {
            "external_id": frame["external_id"],
            "company": company[good].astype("int64"),
            "journal": eref.journal,
            "period": period[good].astype("int64"),
            "date": booked[good],
            "description": description,
            "source_id": frame["expense_id"].map(str, na_action="ignore"),
            "source_version": pd.to_numeric(frame["expense_version"], errors="coerce").astype(
                "Int64"
            ),
            "reverses": reverses[good].astype("Int64"),
            "expense_date": dates(frame["expense_date"]),
            "expense_project": project[good].astype("int64"),
            "expense_employee": employee_key[good].map(employees["id"]).astype("int64"),
            "expense_category": frame["category"],
            "expense_tax_amount": decimals(frame["tax_amount"]),
            "expense_markup_percent": decimals(frame["markup_percent"]),
            "expense_rebill_amount": decimals(frame["rebill_amount"]),
            "expense_billable": frame["billable"].astype(bool),
            "expense_reimbursable": reimbursable[good],
            "expense_receipt": frame["receipt_ref"],
        }
    )
    rows = records(payload)
    for row, amt, credit, reimb, who in zip(
        rows,
        amount[good],
        credit_account[good].astype("int64"),
        reimbursable[good],
        party,
        strict=True,
    ):
        debit_side = {"account": eref.expense_account, **_sides(amt)}
        credit_side = {"account": int(credit), **_sides(-amt)}
        if reimb:
            credit_side["party"] = int(who)
        row["lines"] = [["create", [debit_side, credit_side]]]
    created = PostResult()
    session.create_isolated(MODEL, rows, created)
    result.rejected.update(created.rejected)
    states = session.lookup(MODEL, created.accepted, ["state"])
    result.accepted.extend(sorted(k for k, v in states.items() if v["state"] == "posted"))
    _post_drafts(session, {k: v["id"] for k, v in states.items() if v["state"] != "posted"}, result)


def _sides(amount: Decimal) -> dict[str, Decimal]:
    """A move line's debit and credit for a signed amount (both are 0 or more in Tryton)."""
    return {"debit": max(amount, ZERO), "credit": max(-amount, ZERO)}


def _post_drafts(session: TrytonSession, drafts: dict[str, int], result: PostResult) -> None:
    """Post draft moves in batches; one Tryton refuses (a closed period) is deleted and
    rejected with Tryton's message, so a later window can post it."""
    for chunk in chunks(sorted(drafts.items()), session.batch_size):
        try:
            session.rpc.model(MODEL, "post", [i for _, i in chunk])
            result.accepted.extend(k for k, _ in chunk)
            continue
        except TrytonUserError:
            pass
        for external_id, move in chunk:  # one by one: isolate the refused ones
            try:
                session.rpc.model(MODEL, "post", [move])
                result.accepted.append(external_id)
            except TrytonUserError as exc:
                session.rpc.model(MODEL, "delete", [move])
                result.rejected[external_id] = exc.message


def read_expense_lines(
    session: TrytonSession, eref: ExpenseRefs, date_from: dt.date, date_to: dt.date
) -> pd.DataFrame:
    """Expense moves stagepost posted (with an external ID), expense date in range; the
    amount is the expense account's line (debit - credit)."""
    refs = session.refs
    rows = session.rpc.model(
        MODEL,
        "search_read",
        [
            ("expense_date", ">=", date_from),
            ("expense_date", "<=", date_to),
            ("external_id", "!=", None),
        ],
        0,
        None,
        [("id", "ASC")],
        [
            "external_id",
            "source_id",
            "source_version",
            "reverses.external_id",
            "company",
            "date",
            "expense_date",
            "expense_project.external_id",
            "expense_employee.external_id",
            "expense_category",
            "expense_tax_amount",
            "expense_markup_percent",
            "expense_rebill_amount",
            "expense_billable",
            "expense_reimbursable",
            "expense_receipt",
            "description",
        ],
    )
    if not rows:
        return pd.DataFrame(columns=list(EXPENSE_LINE_COLUMNS))
    raw = pd.DataFrame(rows)
    amounts: dict[int, Decimal] = {}
    for chunk in chunks(raw["id"].tolist(), 10_000):
        for line in session.rpc.model(
            "account.move.line",
            "search_read",
            [("move", "in", list(chunk)), ("account", "=", eref.expense_account)],
            0,
            None,
            None,
            ["move", "debit", "credit"],
        ):
            amounts[line["move"]] = amounts.get(line["move"], ZERO) + line["debit"] - line["credit"]
    # Tryton books a move by its date: the period is the date's month.
    raw["accounting_date"] = raw["date"]
    currency = raw["company"].map(refs.currency_code_of_company)
    work = nested(raw["expense_project."], "external_id").astype(object)
    codes = work.str.split(TASK_SEPARATOR, n=1, expand=True).reindex(columns=[0, 1])
    out = pd.DataFrame(
        {
            **document_identity(
                raw, refs.legal_entity_of, "expense_date", ("expense_id", "expense_version")
            ),
            "employee_id": nested(raw["expense_employee."], "external_id"),
            "project_code": codes[0],
            "task_code": codes[1].where(codes[1].notna(), None),
            "expense_date": raw["expense_date"],
            "category": raw["expense_category"],
            "amount": raw["id"].map(amounts),
            "tax_amount": raw["expense_tax_amount"],
            "currency": currency,
            "billable": raw["expense_billable"].astype(bool),
            "reimbursable": raw["expense_reimbursable"].astype(bool),
            "markup_percent": raw["expense_markup_percent"],
            "rebill_amount": raw["expense_rebill_amount"],
            "receipt_ref": raw["expense_receipt"],
            "description": raw["description"],
        }
    )
    return out[list(EXPENSE_LINE_COLUMNS)]
