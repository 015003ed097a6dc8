"""Customer invoices and credit notes in Tryton (`account.invoice`, type out).

An invoice is created as a draft and posted with its `post` button; one Tryton refuses
to post (closed period, digits...) is deleted again and rejected with Tryton's message,
so a later run can post it. A draft left by an interrupted run (same external ID) is
posted, not created twice. A reversal is a full credit note from Tryton's own
`account.invoice.credit` wizard (without refund: the original stays posted and the
credit note offsets it), carrying the reversal's external ID, then posted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from .base import INVOICE_COLUMNS, INVOICE_PAYMENT_COLUMNS, ErpError, PostResult
from .tryton_rpc import TrytonUserError, TrytonUserWarning
from .tryton_session import (
    CUSTOMER_PREFIX,
    HELD_INVOICE_STATES,
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

_PAYMENT_TERM_WARNING = ".invoice_payment_term"
#: Tryton's warnings (for a person typing an invoice) that a sync answers "yes" to: the
#: PSA's dates are the document's dates. An invoice dated at month end and released
#: before it ends is normal; refusing it would make a window's outcome depend on the
#: day it runs. Any other warning rejects the invoice.
_CONFIRMED_WARNINGS = (_PAYMENT_TERM_WARNING, ".invoice_date_future")


def post_invoices(
    session: TrytonSession, invoices: pd.DataFrame, lines: pd.DataFrame
) -> PostResult:
    """Create and post invoices (`INVOICE_COLUMNS`) with their lines; credit reversals."""
    result = PostResult()
    frame = invoices[invoices["external_id"].notna()].drop_duplicates("external_id")
    if frame.empty:
        return result
    known = session.lookup("account.invoice", frame["external_id"], ["state"])
    held = {k for k, v in known.items() if v["state"] in HELD_INVOICE_STATES}
    result.accepted.extend(sorted(held))
    drafts = {k: v["id"] for k, v in known.items() if k not in held}
    frame = frame[~frame["external_id"].isin(held)]
    due = frame.set_index("external_id")["due_date"]
    _post_drafts(session, drafts, due, result)
    fresh = frame[~frame["external_id"].isin(drafts)]
    is_reversal = fresh["kind"].eq("reversal")
    _create_invoices(session, fresh[~is_reversal], lines, result)
    for row in records(fresh[is_reversal]):
        _credit(session, row, result)
    return result


def _create_invoices(
    session: TrytonSession, frame: pd.DataFrame, lines: pd.DataFrame, result: PostResult
) -> None:
    if frame.empty:
        return
    refs = session.refs
    company = frame["legal_entity"].map(refs.company_of)
    party_key = CUSTOMER_PREFIX + frame["customer_id"].astype(str)
    parties = session.lookup("party.party", party_key, ["addresses", "account_receivable"])
    party = party_key.map({k: v["id"] for k, v in parties.items()})
    address = party_key.map({k: v["addresses"][0] for k, v in parties.items() if v["addresses"]})
    receivable = party_key.map(
        {k: v["account_receivable"] for k, v in parties.items() if v["account_receivable"]}
    ).where(lambda s: s.notna(), company.map(refs.receivable_of_company))
    currency = frame["currency"].map(refs.currency_id)
    project_key = frame["project_code"].astype(str)
    project = project_key.map(
        session.ids("project.work", frame["project_code"].dropna().astype(str))
    )
    has_lines = frame["external_id"].isin(lines["invoice_external_id"])
    problems = pd.Series(
        np.select(
            [
                company.isna(),
                party.isna(),
                address.isna(),
                currency.isna(),
                frame["project_code"].notna() & project.isna(),
                receivable.isna(),
                ~has_lines,
            ],
            [
                "no Tryton company for legal entity " + frame["legal_entity"].astype(str),
                "customer " + frame["customer_id"].astype(str) + " is not in Tryton",
                "customer " + frame["customer_id"].astype(str) + " has no address in Tryton",
                "currency " + frame["currency"].astype(str) + " is not in Tryton",
                "project " + project_key + " is not in Tryton",
                "no receivable account for the customer in Tryton",
                "an invoice without lines",
            ],
            default="",
        ),
        index=frame.index,
    )
    good = reject(result, problems, frame["external_id"])
    if not good.any():
        return
    frame = frame[good]
    company, currency = company[good].astype("int64"), currency[good].astype("int64")
    payload = pd.DataFrame(
        {
            "external_id": frame["external_id"],
            "type": "out",
            "company": company,
            "party": party[good].astype("int64"),
            "invoice_address": address[good].astype("int64"),
            "account": receivable[good].astype("int64"),
            "currency": currency,
            "journal": refs.journal,
            "invoice_date": dates(frame["issue_date"]),
            "accounting_date": accounting_dates(frame["period"], frame["issue_date"]),
            # No payment term: the one maturity falls on the PSA's due date.
            "payment_term": None,
            "payment_term_date": dates(frame["due_date"]),
            "reference": frame["invoice_id"].map(str, na_action="ignore"),
            "source_id": frame["invoice_id"].map(str, na_action="ignore"),
            "source_version": pd.to_numeric(frame["invoice_version"], errors="coerce").astype(
                "Int64"
            ),
            "project": project[good].astype("Int64"),
        }
    )
    rows = records(payload)
    own_lines = _line_records(
        session,
        lines,
        dict(zip(frame["external_id"], company, strict=True)),
        dict(zip(frame["external_id"], currency, strict=True)),
    )
    for row in rows:
        row["lines"] = [["create", own_lines[row["external_id"]]]]
    created = PostResult()
    session.create_isolated("account.invoice", rows, created)
    result.rejected.update(created.rejected)
    states = session.lookup("account.invoice", created.accepted, ["state"])
    drafts = {k: v["id"] for k, v in states.items() if v["state"] not in HELD_INVOICE_STATES}
    result.accepted.extend(sorted(set(created.accepted) - set(drafts)))
    _post_drafts(session, drafts, frame.set_index("external_id")["due_date"], result)


def _line_records(
    session: TrytonSession,
    lines: pd.DataFrame,
    company_of: Mapping[str, int],
    currency_of: Mapping[str, int],
) -> dict[str, list[dict[str, Any]]]:
    """Invoice lines per invoice external ID, priced with the service product.

    Tryton's invoice line quantity is a float with the unit's digits (2 for hours):
    more digits are refused by Tryton, not rounded here.
    """
    refs = session.refs
    own = lines[lines["invoice_external_id"].isin(company_of)]
    payload = pd.DataFrame(
        {
            "invoice": own["invoice_external_id"],
            "sequence": pd.to_numeric(own["line_no"], errors="coerce").astype("Int64"),
            "type": "line",
            "product": refs.product,
            "unit": refs.unit,
            "account": refs.revenue_account,
            "quantity": pd.to_numeric(own["quantity"].astype(str), errors="coerce"),
            "unit_price": decimals(own["unit_price"]),
            "description": own["description"].where(own["description"].notna(), own["line_kind"]),
            "company": own["invoice_external_id"].map(company_of),
            "currency": own["invoice_external_id"].map(currency_of),
        }
    )
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in records(payload):
        grouped.setdefault(row.pop("invoice"), []).append(row)
    return grouped


def _post_drafts(
    session: TrytonSession, drafts: Mapping[str, int], due: pd.Series, result: PostResult
) -> None:
    """Post draft invoices in batches; bisect a refused batch to the refused invoices.

    Warnings in `_CONFIRMED_WARNINGS` are confirmed by name (Tryton's key covers the
    batch's invoices) and the batch is posted again."""
    if not drafts:
        return
    _acknowledge_past_due(session, drafts, due)
    confirmed: set[str] = set()
    queue: deque[list[tuple[str, int]]] = deque(
        list(chunk) for chunk in chunks(sorted(drafts.items()), session.batch_size)
    )
    while queue:
        chunk = queue.popleft()
        try:
            session.rpc.model("account.invoice", "post", [i for _, i in chunk])
        except TrytonUserWarning as warning:
            if warning.name.endswith(_CONFIRMED_WARNINGS) and warning.name not in confirmed:
                confirmed.add(warning.name)  # asked again after a "yes": reject, no loop
                _skip_warnings(session, [warning.name])
                queue.appendleft(chunk)
            elif len(chunk) == 1:
                _reject_draft(session, chunk[0], warning.message, result)
            else:
                queue.extendleft([chunk[len(chunk) // 2 :], chunk[: len(chunk) // 2]])
        except TrytonUserError as exc:
            if len(chunk) == 1:
                _reject_draft(session, chunk[0], exc.message, result)
            else:
                queue.extendleft([chunk[len(chunk) // 2 :], chunk[: len(chunk) // 2]])
        else:
            result.accepted.extend(ext for ext, _ in chunk)


def _acknowledge_past_due(
    session: TrytonSession, drafts: Mapping[str, int], due: pd.Series
) -> None:
    """Confirm Tryton's "payment date in the past" warning for invoices due by now.

    Posting an invoice the PSA issued weeks ago is the normal case for a sync, so the
    warning is answered the way Tryton's client does: a `res.user.warning` named after
    the invoice (the key of Tryton's `Warning.format`), all in one call. Should the key
    format change, `_post_drafts` still answers each warning as it comes.
    """
    soon = pd.Timestamp(dt.date.today() + dt.timedelta(days=2))
    due_dates = pd.to_datetime(due.reindex(list(drafts)), errors="coerce")
    names = [
        hashlib.md5(f"account.invoice,{drafts[ext]}".encode()).hexdigest()  # noqa: S324
        + _PAYMENT_TERM_WARNING
        for ext, when in due_dates.items()
        if pd.isna(when) or when < soon
    ]
    if names:
        _skip_warnings(session, names)


def _skip_warnings(session: TrytonSession, names: list[str]) -> None:
    session.rpc.model(
        "res.user.warning",
        "create",
        [{"user": session.rpc.user_id, "name": name, "always": False} for name in names],
    )


def _reject_draft(
    session: TrytonSession, item: tuple[str, int], message: str, result: PostResult
) -> None:
    ext, invoice_id = item
    session.rpc.model("account.invoice", "delete", [invoice_id])
    result.rejected[ext] = message


def _credit(session: TrytonSession, row: dict[str, Any], result: PostResult) -> None:
    """Credit the reversed invoice in full with Tryton's credit wizard, then post."""
    ext, reversed_ext = row["external_id"], row["reverses_external_id"]
    original = session.lookup("account.invoice", [reversed_ext], ["state", "total_amount"]).get(
        reversed_ext
    )
    if original is None:
        result.rejected[ext] = f"the credited invoice {reversed_ext} is not in Tryton"
        return
    if original["state"] not in {"posted", "paid"}:
        result.rejected[ext] = (
            f"the credited invoice {reversed_ext} is {original['state']} in Tryton"
        )
        return
    total = row.get("total_amount")
    if total is not None and Decimal(str(total)) != -original["total_amount"]:
        result.rejected[ext] = (
            f"Tryton credits {reversed_ext} in full ({-original['total_amount']}), not {total}"
        )
        return
    one = pd.DataFrame([row])
    credit_id = _run_credit_wizard(session, original["id"], dates(one["issue_date"]).iloc[0])
    invoice_id = row.get("invoice_id")
    version = row.get("invoice_version")
    try:
        session.rpc.model(
            "account.invoice",
            "write",
            [credit_id],
            {
                "external_id": ext,
                "reverses": original["id"],
                "source_id": None if invoice_id is None else str(invoice_id),
                "source_version": None if version is None else int(version),
                "reference": None if invoice_id is None else str(invoice_id),
                "accounting_date": accounting_dates(one["period"], one["issue_date"]).iloc[0],
                "payment_term_date": dates(one["due_date"]).iloc[0],
            },
        )
    except TrytonUserError as exc:
        session.rpc.model("account.invoice", "delete", [credit_id])
        if session.lookup("account.invoice", [ext]):
            result.accepted.append(ext)  # a concurrent run credited it
        else:
            result.rejected[ext] = exc.message
        return
    _post_drafts(session, {ext: credit_id}, one.set_index("external_id")["due_date"], result)


def _run_credit_wizard(
    session: TrytonSession, invoice_id: int, invoice_date: dt.date | None
) -> int:
    rpc = session.rpc
    wizard, _, _ = rpc.call("wizard.account.invoice.credit.create")
    active = {
        "active_model": "account.invoice",
        "active_id": invoice_id,
        "active_ids": [invoice_id],
    }
    start = {"invoice_date": invoice_date, "with_refund": False, "with_refund_allowed": False}
    try:
        answer = rpc.call(
            "wizard.account.invoice.credit.execute",
            wizard,
            {"start": start},
            "credit",
            context=active,
        )
    finally:
        rpc.call("wizard.account.invoice.credit.delete", wizard)
    try:
        (credit_id,) = answer["actions"][0][1]["res_id"]
    except (KeyError, IndexError, TypeError, ValueError):
        raise ErpError("Tryton's credit wizard did not return one credit note") from None
    return int(credit_id)


def read_invoices(session: TrytonSession, date_from: dt.date, date_to: dt.date) -> pd.DataFrame:
    """Invoices stagepost posted (with an external ID), invoice date in range, with
    Tryton's state as status (draft, validated, posted, paid, cancelled)."""
    refs = session.refs
    rows = session.rpc.model(
        "account.invoice",
        "search_read",
        [
            ("type", "=", "out"),
            ("invoice_date", ">=", date_from),
            ("invoice_date", "<=", date_to),
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
            "project.external_id",
            "party.external_id",
            "currency.code",
            "invoice_date",
            "payment_term_date",
            "accounting_date",
            "total_amount",
            "state",
        ],
    )
    if not rows:
        return pd.DataFrame(columns=list(INVOICE_COLUMNS))
    raw = pd.DataFrame(rows)
    out = pd.DataFrame(
        {
            **document_identity(
                raw, refs.legal_entity_of, "invoice_date", ("invoice_id", "invoice_version")
            ),
            "project_code": nested(raw["project."], "external_id"),
            "customer_id": nested(raw["party."], "external_id").str.removeprefix(CUSTOMER_PREFIX),
            "currency": nested(raw["currency."], "code"),
            "issue_date": raw["invoice_date"],
            "due_date": raw["payment_term_date"],
            "total_amount": raw["total_amount"],
            "status": raw["state"],
        }
    )
    return out[list(INVOICE_COLUMNS)]


def read_invoice_payments(session: TrytonSession, external_ids: Sequence[str]) -> pd.DataFrame:
    """Tryton's number, state and `amount_to_pay` of these invoices (`INVOICE_PAYMENT_COLUMNS`).

    An invoice Tryton cancelled, or one a posted credit note of stagepost's reverses (the
    credit wizard leaves the original posted), is `cancelled` with nothing open; a posted one
    with less to pay than its total is `partially_paid`; other states keep Tryton's name
    (draft, validated, posted, paid)."""
    found = session.lookup(
        "account.invoice",
        external_ids,
        ["number", "state", "amount_to_pay", "total_amount", "reverses"],
    )
    if not found:
        return pd.DataFrame(columns=list(INVOICE_PAYMENT_COLUMNS))
    raw = pd.DataFrame(list(found.values()))
    raw = raw[raw["reverses"].isna()]  # credit notes bill nothing
    credited = session.rpc.model(
        "account.invoice",
        "search_read",
        [("reverses", "in", [int(i) for i in raw["id"]]), ("state", "in", ["posted", "paid"])],
        0,
        None,
        None,
        ["reverses"],
    )
    credited_ids = {row["reverses"] for row in credited}
    to_pay = decimals(raw["amount_to_pay"].fillna(0))
    total = decimals(raw["total_amount"].fillna(0))
    cancelled = raw["state"].eq("cancelled") | raw["id"].isin(credited_ids)
    status = np.select(
        [cancelled, raw["state"].eq("posted") & (to_pay < total)],
        ["cancelled", "partially_paid"],
        default=raw["state"],
    )
    out = pd.DataFrame(
        {
            "external_id": raw["external_id"],
            "erp_number": raw["number"],
            "status": status,
            "amount_open": to_pay.where(~cancelled, Decimal("0.00")),
        }
    )
    return out[list(INVOICE_PAYMENT_COLUMNS)].reset_index(drop=True)
