"""Revenue journals and WIP accruals in Tryton: `account.move` with its lines, posted.

A journal is created as a draft move in the company's general journal, in the standard
period of its date, its lines on accounts looked up by code in the company's chart, then
posted with Tryton's `post` button (which checks that it balances). A move Tryton refuses
to post (closed period, unbalanced) is deleted again and rejected with Tryton's message; a
draft left by an interrupted run (same external ID) is posted, not created twice. A
reversal names the move it reverses (`reverses`, stagepost's module): an accrual's
reversal comes in the same request as the accrual, so posts are created first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pandas as pd

from .base import JOURNAL_READ_COLUMNS, PostResult
from .tryton_rpc import TrytonUserError
from .tryton_session import TrytonSession, chunks

_POSTED = ("posted",)


def _ids(rpc, model: str, domain: list, limit: int | None = None) -> list[int]:
    return rpc.model(model, "search", domain, 0, limit, None)


def _general_journal(session: TrytonSession) -> int | None:
    found = _ids(session.rpc, "account.journal", [("type", "=", "general")], 1)
    return found[0] if found else None


def _accounts(session: TrytonSession, company: int, codes: set[str]) -> dict[str, int]:
    rows = session.rpc.model(
        "account.account",
        "search_read",
        [("company", "=", company), ("code", "in", sorted(codes)), ("closed", "!=", True)],
        0,
        None,
        None,
        ["code"],
    )
    return {r["code"]: r["id"] for r in rows}


def _period(session: TrytonSession, company: int, day: dt.date) -> int | None:
    found = _ids(
        session.rpc,
        "account.period",
        [
            ("company", "=", company),
            ("type", "=", "standard"),
            ("start_date", "<=", day),
            ("end_date", ">=", day),
        ],
        1,
    )
    return found[0] if found else None


def _day(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else pd.Timestamp(value).date()


def post_journals(
    session: TrytonSession, journals: pd.DataFrame, lines: pd.DataFrame
) -> PostResult:
    """Create and post journals (`documents.JOURNAL`) with their lines (`JOURNAL_LINE`)."""
    result = PostResult()
    frame = journals[journals["external_id"].notna()].drop_duplicates("external_id")
    if frame.empty:
        return result
    known = session.lookup("account.move", frame["external_id"], ["state"])
    posted = {k for k, v in known.items() if v["state"] in _POSTED}
    result.accepted.extend(sorted(posted))
    drafts = {k: v["id"] for k, v in known.items() if k not in posted}
    todo = frame[~frame["external_id"].isin(known)]
    # Posts first: a reversal in the same request may name one of them.
    todo = todo.assign(_order=(todo["kind"] != "post").astype(int)).sort_values(
        ["_order", "external_id"]
    )
    by_journal = {k: g for k, g in lines.groupby("journal_external_id")}
    journal = _general_journal(session)
    refs = session.refs
    # One look-up per company and code, and per company and day, whatever the journal count.
    codes_of: dict[int, set[str]] = {}
    for j in todo.to_dict("records"):
        company = refs.company_of.get(j["legal_entity"])
        jl = by_journal.get(j["external_id"])
        if company is not None and jl is not None:
            codes_of.setdefault(company, set()).update(jl["account_code"])
    chart = {c: _accounts(session, c, codes) for c, codes in codes_of.items()}
    periods: dict[tuple[int, dt.date], int | None] = {}
    for kind in ("post", "reversal"):
        part = todo[todo["kind"] == kind]
        if part.empty:
            continue
        reversed_ids = session.ids("account.move", part["reverses_external_id"].dropna())
        rows = []
        for j in part.to_dict("records"):
            ext = j["external_id"]
            company = refs.company_of.get(j["legal_entity"])
            if company is None:
                result.rejected[ext] = f"Tryton has no company for legal entity {j['legal_entity']}"
                continue
            if journal is None:
                result.rejected[ext] = "Tryton has no general journal"
                continue
            day = _day(j["journal_date"])
            if (company, day) not in periods:
                periods[(company, day)] = _period(session, company, day)
            period = periods[(company, day)]
            if period is None:
                result.rejected[ext] = f"No period of company {company} holds {day}"
                continue
            jl = by_journal.get(ext)
            if jl is None or jl.empty:
                result.rejected[ext] = f"Journal {ext} has no lines"
                continue
            accounts = chart.get(company, {})
            missing = sorted(set(jl["account_code"]) - set(accounts))
            if missing:
                result.rejected[ext] = (
                    f"Account(s) {', '.join(missing)} do not exist in Tryton's chart of company "
                    f"{company}"
                )
                continue
            reverses = None
            if kind == "reversal":
                reverses = reversed_ids.get(j["reverses_external_id"])
                if reverses is None:
                    result.rejected[ext] = (
                        f"Journal to reverse {j['reverses_external_id']} does not exist"
                    )
                    continue
            rows.append(
                {
                    "external_id": ext,
                    "source_id": j["journal_id"],
                    "source_version": int(j["journal_version"]),
                    "stagepost_type": j["journal_type"],
                    "reverses": reverses,
                    "company": company,
                    "journal": journal,
                    "period": period,
                    "date": day,
                    "description": f"{j['journal_type']} {j['journal_id']}",
                    "lines": [
                        (
                            "create",
                            [
                                {
                                    "account": accounts[r["account_code"]],
                                    "debit": Decimal(r["debit"]),
                                    "credit": Decimal(r["credit"]),
                                    "description": r["description"],
                                    "stagepost_project": r["project_code"],
                                    "stagepost_role": r["line_role"],
                                }
                                for r in jl.sort_values("line_no").to_dict("records")
                            ],
                        )
                    ],
                }
            )
        created = PostResult()
        session.create_isolated("account.move", rows, created)
        result.rejected.update(created.rejected)
        ids = session.ids("account.move", created.accepted)
        drafts.update({k: v for k, v in ids.items() if k in set(created.accepted)})
        _post(session, {k: drafts[k] for k in part["external_id"] if k in drafts}, result)
    # Drafts of an interrupted run that this request did not create: post them too.
    rest = {k: v for k, v in drafts.items() if k not in set(todo["external_id"])}
    _post(session, rest, result)
    return result


def _post(session: TrytonSession, drafts: Mapping[str, int], result: PostResult) -> None:
    """Post drafts a chunk at a time; one Tryton refuses is deleted and rejected."""
    for chunk in chunks(sorted(drafts.items()), session.batch_size):
        try:
            session.rpc.model("account.move", "post", [i for _, i in chunk])
            result.accepted.extend(k for k, _ in chunk)
            continue
        except TrytonUserError:
            pass
        for ext, move in chunk:
            try:
                session.rpc.model("account.move", "post", [move])
                result.accepted.append(ext)
            except TrytonUserError as exc:
                session.rpc.model("account.move", "delete", [move])
                result.rejected[ext] = exc.message


def read_journal_lines(
    session: TrytonSession, date_from: dt.date, date_to: dt.date
) -> pd.DataFrame:
    """Posted moves stagepost made, dated in the range, one row per line
    (`JOURNAL_READ_COLUMNS`); the period is the month of the move's date."""
    rpc = session.rpc
    moves = rpc.model(
        "account.move",
        "search_read",
        [
            ("external_id", "!=", None),
            ("state", "=", "posted"),
            ("date", ">=", date_from),
            ("date", "<=", date_to),
        ],
        0,
        None,
        [("external_id", "ASC")],
        ["external_id", "source_id", "stagepost_type", "company", "date", "reverses", "lines"],
    )
    if not moves:
        return pd.DataFrame(columns=list(JOURNAL_READ_COLUMNS))
    refs = session.refs
    line_ids = [i for m in moves for i in m["lines"]]
    lines = {
        r["id"]: r
        for c in chunks(line_ids, session.batch_size)
        for r in rpc.model(
            "account.move.line",
            "read",
            list(c),
            ["account.code", "debit", "credit", "stagepost_project", "stagepost_role"],
        )
    }
    out = []
    for m in moves:
        day = _day(m["date"])
        for no, lid in enumerate(sorted(m["lines"]), start=1):
            line = lines[lid]
            out.append(
                {
                    "external_id": m["external_id"],
                    "kind": "reversal" if m["reverses"] else "post",
                    "journal_id": m["source_id"],
                    "journal_type": m["stagepost_type"],
                    "legal_entity": refs.legal_entity_of.get(m["company"]),
                    "currency": refs.currency_code_of_company.get(m["company"]),
                    "journal_date": day,
                    "period": day.strftime("%Y-%m"),
                    "line_no": no,
                    "account_code": (line.get("account.") or {}).get("code"),
                    "project_code": line["stagepost_project"],
                    "line_role": line["stagepost_role"],
                    "debit": Decimal(line["debit"]),
                    "credit": Decimal(line["credit"]),
                }
            )
    return pd.DataFrame(out, columns=list(JOURNAL_READ_COLUMNS))
