"""What finance does on the desk, each audited (`desk/audit.py`): assign an owner and a due
date, comment, ignore rows with a reason after a preview of exactly the rows it will hit, and
undo an ignore (the rows reopen; the next validation judges them again). Every change is
set-based SQL in one transaction with its audit rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.sources.canonical import DATASETS
from desk import audit
from desk.sessions import Session
from staging_models import desk_items
from staging_models.db import StagingDB

#: Rows an ignore preview lists (it always counts them all).
PREVIEW_ROWS = 500


class ActionRefused(ValueError):
    """The action cannot be done as asked; the message says why, for the page."""


@dataclass(frozen=True)
class Selection:
    """Which exceptions an action is about: ticked groups, or every open row of a rule."""

    items: tuple[tuple[str, str], ...] = ()  # (dataset, group_key)
    rule: str = ""
    dataset: str = ""

    @classmethod
    def parse(cls, items: list[str], rule: str = "", dataset: str = "") -> Selection:
        pairs = []
        for it in items:
            ds, sep, gk = it.partition("|")
            if not sep or ds not in DATASETS or not gk:
                raise ActionRefused(f"not an exception: {it!r}")
            pairs.append((ds, gk))
        if dataset and dataset not in DATASETS:
            raise ActionRefused(f"no dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
        if not pairs and not rule:
            raise ActionRefused("tick the exceptions to act on, or name a rule")
        return cls(tuple(sorted(set(pairs))), rule.strip(), dataset)

    def describe(self) -> dict[str, Any]:
        if self.items:
            return {"items": [f"{d}|{g}" for d, g in self.items]}
        return {"rule": self.rule, "dataset": self.dataset or "every dataset"}

    def condition(self, alias: str = "q") -> tuple[str, dict[str, Any], list[str]]:
        """SQL over quarantine rows `alias` matching the selection; params; expanding params."""
        if not self.items:
            cond = f"position(',' || :sel_rule || ',' IN ',' || {alias}.rule_codes || ',') > 0"
            params: dict[str, Any] = {"sel_rule": self.rule}
            if self.dataset:
                cond += f" AND {alias}.dataset = :sel_ds"
                params["sel_ds"] = self.dataset
            return cond, params, []
        keyed = [f"{d}|{g}" for d, g in self.items if not g.startswith("~")]
        keyless = [f"{d}|{g}" for d, g in self.items if g.startswith("~")]
        parts, params, expanding = [], {}, []
        if keyed:
            parts.append(f"({alias}.dataset || '|' || {alias}.row_key) IN :sel_keyed")
            params["sel_keyed"], expanding = keyed, ["sel_keyed"]
        if keyless:
            parts.append(
                f"({alias}.row_key LIKE '~%' AND "
                f"({alias}.dataset || '|' || {desk_items.group_key_sql(alias)}) IN :sel_keyless)"
            )
            params["sel_keyless"] = keyless
            expanding.append("sel_keyless")
        return "(" + " OR ".join(parts) + ")", params, expanding


def _stmt(sql: str, expanding: list[str]) -> sa.TextClause:
    stmt = sa.text(sql)
    if expanding:
        stmt = stmt.bindparams(*(sa.bindparam(n, expanding=True) for n in expanding))
    return stmt


@dataclass
class Preview:
    rows: list[dict[str, Any]]
    total: int
    token: str  # digest of exactly the rows the ignore will hit


def _hit(conn: Connection, sel: Selection, status: str) -> list[tuple[str, str, int]]:
    cond, params, exp = sel.condition()
    return [
        tuple(r)
        for r in conn.execute(
            _stmt(
                f"""SELECT q.dataset, q.row_key, q.version FROM quarantine q
                    WHERE q.status = :status AND {cond}
                    ORDER BY q.dataset, q.row_key, q.version""",
                exp,
            ),
            {**params, "status": status},
        )
    ]


def _digest(rows: list[tuple[str, str, int]]) -> str:
    h = hashlib.sha256()
    for ds, key, version in rows:
        h.update(f"{ds}\x1f{key}\x1f{version}\x1e".encode())
    return h.hexdigest()


def preview_ignore(db: StagingDB, sel: Selection) -> Preview:
    """The open quarantine rows an ignore of `sel` would hit (all counted, the first listed)."""
    cond, params, exp = sel.condition()
    with db.engine.connect() as conn:
        hit = _hit(conn, sel, "open")
        rows = [
            dict(r._mapping)
            for r in conn.execute(
                _stmt(
                    f"""SELECT q.dataset, q.row_key, q.version, q.rule_codes, q.messages,
                               q.source_file, q.row_no, q.first_seen
                        FROM quarantine q WHERE q.status = 'open' AND {cond}
                        ORDER BY q.dataset, q.row_key, q.version LIMIT {PREVIEW_ROWS}""",
                    exp,
                ),
                params,
            )
        ]
    return Preview(rows, len(hit), _digest(hit))


def ignore(db: StagingDB, who: Session, sel: Selection, reason: str, token: str) -> tuple[str, int]:
    """Ignore exactly the previewed rows; refused if they changed since the preview."""
    if not reason.strip():
        raise ActionRefused("ignoring needs a reason (it is kept in the audit trail)")
    now = datetime.now(UTC)
    cond, params, exp = sel.condition()
    with db.begin() as conn:
        hit = _hit(conn, sel, "open")
        if not hit:
            raise ActionRefused("no open row matches: nothing to ignore")
        if _digest(hit) != token:
            raise ActionRefused("the rows changed since the preview: preview again")
        audit_id = audit.record(
            conn,
            who,
            "ignore",
            now=now,
            dataset=sel.dataset or None,
            detail={**sel.describe(), "reason": reason.strip()},
            rows=len(hit),
        )
        params = {
            **params,
            "now": now,
            "actor": f"{who.username} (desk)",
            "reason": reason.strip(),
            "aid": audit_id,
        }
        where = f"q.status = 'open' AND {cond}"
        conn.execute(
            _stmt(
                f"""INSERT INTO desk_audit_rows (audit_id, dataset, row_key, version)
                    SELECT :aid, q.dataset, q.row_key, q.version FROM quarantine q WHERE {where}""",
                exp,
            ),
            params,
        )
        conn.execute(
            _stmt(
                f"""INSERT INTO quarantine_events (dataset, row_key, version, event, event_at,
                                                   actor, reason)
                    SELECT q.dataset, q.row_key, q.version, 'ignored', :now, :actor, :reason
                    FROM quarantine q WHERE {where}""",
                exp,
            ),
            params,
        )
        _set_status(conn, audit_id, "ignored", params)
    desk_items.refresh(db)
    return audit_id, len(hit)


def _set_status(conn: Connection, audit_id: str, status: str, params: dict[str, Any]) -> int:
    """Set the status of the quarantine rows recorded under `audit_id`."""
    before = "open" if status == "ignored" else "ignored"
    return conn.execute(
        sa.text(
            """UPDATE quarantine SET status = :new, status_at = :now, status_by = :actor,
                      status_reason = :reason
               WHERE status = :before AND EXISTS (
                   SELECT 1 FROM desk_audit_rows r WHERE r.audit_id = :aid
                     AND r.dataset = quarantine.dataset AND r.row_key = quarantine.row_key
                     AND r.version = quarantine.version)"""
        ),
        {
            "new": status,
            "before": before,
            "now": params["now"],
            "actor": params["actor"],
            "reason": params["reason"],
            "aid": audit_id,
        },
    ).rowcount


def reopen(
    db: StagingDB, who: Session, *, undo: str = "", sel: Selection | None = None, reason: str = ""
) -> tuple[str, int]:
    """Undo an ignore (`undo`: its audit id) or reopen ignored groups (`sel`): the rows are open
    again and the next validation judges them (released if they pass by then)."""
    now = datetime.now(UTC)
    why = reason.strip() or (f"undo of {undo}" if undo else "reopened on the desk")
    with db.begin() as conn:
        if undo:
            found = conn.execute(
                sa.text("SELECT action FROM desk_audit WHERE audit_id = :a"), {"a": undo}
            ).scalar()
            if found != "ignore":
                raise ActionRefused("only an ignore can be undone")
            rows = conn.execute(
                sa.text(
                    """SELECT r.dataset, r.row_key, r.version FROM desk_audit_rows r
                       JOIN quarantine q ON q.dataset = r.dataset AND q.row_key = r.row_key
                        AND q.version = r.version
                       WHERE r.audit_id = :a AND q.status = 'ignored'"""
                ),
                {"a": undo},
            ).fetchall()
        elif sel is not None:
            rows = _hit(conn, sel, "ignored")
        else:
            raise ActionRefused("name the ignore to undo, or the exceptions to reopen")
        if not rows:
            raise ActionRefused("nothing to reopen: those rows are not ignored any more")
        audit_id = audit.record(
            conn,
            who,
            "reopen",
            now=now,
            detail={"undoes": undo} if undo else {**(sel.describe() if sel else {}), "reason": why},
            rows=len(rows),
        )
        conn.execute(
            sa.insert(
                sa.table(
                    "desk_audit_rows",
                    sa.column("audit_id"),
                    sa.column("dataset"),
                    sa.column("row_key"),
                    sa.column("version"),
                )
            ),
            [{"audit_id": audit_id, "dataset": d, "row_key": k, "version": v} for d, k, v in rows],
        )
        params = {"now": now, "actor": f"{who.username} (desk)", "reason": why}
        conn.execute(
            sa.text(
                """INSERT INTO quarantine_events (dataset, row_key, version, event, event_at,
                                                  actor, reason)
                   SELECT r.dataset, r.row_key, r.version, 'reopened', :now, :actor, :reason
                   FROM desk_audit_rows r WHERE r.audit_id = :aid"""
            ),
            {**params, "aid": audit_id},
        )
        n = _set_status(conn, audit_id, "open", params)
        # An open row carries no decision any more.
        conn.execute(
            sa.text(
                """UPDATE quarantine SET status_reason = NULL WHERE status = 'open' AND EXISTS (
                   SELECT 1 FROM desk_audit_rows r WHERE r.audit_id = :aid
                     AND r.dataset = quarantine.dataset AND r.row_key = quarantine.row_key
                     AND r.version = quarantine.version)"""
            ),
            {"aid": audit_id},
        )
    desk_items.refresh(db)
    return audit_id, n


def assign(
    db: StagingDB, who: Session, items: list[tuple[str, str]], owner: str, due: date | None
) -> str:
    """Give exceptions an owner (and a due date; none given keeps each one's)."""
    owner = owner.strip()
    if not owner:
        raise ActionRefused("name the owner")
    if not items:
        raise ActionRefused("tick the exceptions to assign")
    now = datetime.now(UTC)
    with db.begin() as conn:
        aid = audit.record(
            conn,
            who,
            "assign",
            now=now,
            detail={"owner": owner, "due_date": due, "items": [f"{d}|{g}" for d, g in items]},
            rows=len(items),
        )
        conn.execute(
            _stmt(
                """UPDATE desk_assignments SET owner = :owner,
                          due_date = coalesce(:due, due_date), routed = false,
                          updated_by = :who, updated_at = :now
                   WHERE (dataset || '|' || group_key) IN :items""",
                ["items"],
            ),
            {
                "owner": owner,
                "due": due,
                "who": who.username,
                "now": now,
                "items": [f"{d}|{g}" for d, g in items],
            },
        )
        desk_items.cache_owners(conn)
    return aid


def comment(db: StagingDB, who: Session, dataset: str, group_key: str, body: str) -> str:
    body = body.strip()
    if not body:
        raise ActionRefused("an empty comment says nothing")
    now = datetime.now(UTC)
    with db.begin() as conn:
        conn.execute(
            sa.text(
                """INSERT INTO desk_comments (dataset, group_key, author, written_at, body)
                   VALUES (:ds, :gk, :who, :now, :body)"""
            ),
            {"ds": dataset, "gk": group_key, "who": who.username, "now": now, "body": body},
        )
        return audit.record(
            conn,
            who,
            "comment",
            now=now,
            dataset=dataset,
            detail={"item": f"{dataset}|{group_key}", "comment": body},
            rows=1,
        )
