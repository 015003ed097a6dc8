"""Intercompany pairs (issue 21, docs/intercompany.md): time an employee of one legal entity
logs on a project of another.

Under `STAGEPOST_INTERCOMPANY_POLICY=intercompany` such an entry is validated (not
quarantined by `TE_LEGAL_ENTITY_MISMATCH`), its customer time line posts in the project's
entity as any other, and validation stores on `validated_time_entries` what the pair is worth:
hours x transfer rate in the employee's currency (the receivable) and, converted at the
exchange rate found, in the project's (the payable), with the rate, its date and source.

A posting window then, after its time lines, posts per such entry a pair of balanced journals
(`documents.JOURNAL`, the revenue journals' ledger and targets):

| journal | legal entity | debit | credit |
|---|---|---|---|
| `ic:{entry}:v{n}:pay` (`ic_payable`) | the project's | `ic_cost` | `ic_payable` |
| `ic:{entry}:v{n}:rec` (`ic_receivable`) | the employee's | `ic_receivable` | `ic_revenue` |

The pair follows the entry's customer line, set-based (SQL), from the ledgers:
- posted when the customer line of the entry's current version is confirmed in the ERP and the
  ledger holds no live journal of that version (a window stopped after the time lines, or a
  half the ERP rejected, is completed by the next window);
- kept while that customer line is live (a correction held for a closed period leaves the old
  line, and so its pair, in place: the ERP's net stays one version);
- reversed (`...:pay:rev`, `...:rec:rev`, mirrored lines, in the customer line reversal's period)
  once its customer line is reversed: an entry moved to a project of its employee's own entity
  gets its pair reversed and no new one; a corrected intercompany entry gets the old pair
  reversed and the new one posted, in one batch.
Each entry's journals share a batch, written into `journal_ledger` as `sent` before the ERP
sees them (`posting.send.send_journal_batches`): re-running a window, or a window after a
SIGKILL, posts nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
from sqlalchemy.engine import Connection

from config.settings import current
from connectors.erp.base import ErpTarget
from connectors.erp.periods import month_end
from connectors.sql import load_temp, read_frame
from posting.journal_plan import write_journal_plan
from posting.lock import WindowLock
from posting.plan import (
    _PERIOD_SCHEMA,
    MAX_EXTERNAL_ID,
    NEXT_OPEN_HORIZON_MONTHS,
    ClosedPeriodPolicy,
    _add_months,
    period_sql,
    temp_table,
)
from posting.send import send_journal_batches
from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows

TYPES = ("ic_payable", "ic_receivable")
ROLES = ("ic_cost", "ic_payable", "ic_receivable", "ic_revenue")
#: Accounts when the configuration names none (`STAGEPOST_INTERCOMPANY_ACCOUNTS`, key `*`).
DEFAULT_ACCOUNTS: dict[str, str] = {
    "ic_cost": "5400",  # intercompany cost of services (the project's entity)
    "ic_payable": "2400",  # intercompany payable (the project's entity)
    "ic_receivable": "1400",  # intercompany receivable (the employee's entity)
    "ic_revenue": "4400",  # intercompany revenue (the employee's entity)
}
ENTRIES_PER_BATCH = 500
PLAN_TABLES = ("ic_accounts", "ic_te", "ic_live", "ic_want", "ic_plan", "ic_plan_lines")

_ACCOUNT_SCHEMA = pa.schema(
    [("legal_entity", pa.string()), ("role", pa.string()), ("account_code", pa.string())]
)
_LIVE_STATES = "('sent', 'confirmed')"


def accounts_for(accounts: Mapping[str, Mapping[str, str]], legal_entity: str) -> dict[str, str]:
    """The intercompany accounts of a legal entity: its own entry, else `*`, else the defaults."""
    out = dict(DEFAULT_ACCOUNTS)
    out.update(accounts.get("*", {}))
    out.update(accounts.get(legal_entity, {}))
    unknown = set(out) - set(ROLES)
    if unknown:
        raise ValueError(
            f"intercompany accounts of {legal_entity}: unknown roles {sorted(unknown)}"
        )
    return out


def has_work(db: StagingDB) -> bool:
    """Whether an intercompany journal is in the ledger (to keep or reverse), or, under the
    `intercompany` policy, any entry is intercompany. Under the default policy with no such
    journal, a window reads nothing more (the validated entries are not scanned)."""
    ledger = f"EXISTS (SELECT 1 FROM journal_ledger WHERE journal_type IN {TYPES!r})"
    entries = "EXISTS (SELECT 1 FROM validated_time_entries WHERE ic_legal_entity IS NOT NULL)"
    if current().intercompany_policy != "intercompany":
        entries = "FALSE"
    return bool(db.scalar(f"SELECT CASE WHEN {ledger} OR {entries} THEN 1 ELSE 0 END"))


def _in_scope(legal_entities: Sequence[str], col: str) -> str:
    if not legal_entities:
        return "TRUE"
    listed = ", ".join("'" + e.replace("'", "''") + "'" for e in sorted(set(legal_entities)))
    return f"{col} IN ({listed})"


def ic_external_id_sql(ident: str, version: str, side: str) -> str:
    """`ic:{entry}:v{n}:pay|rec` (its reversal appends `:rev`), as `posting.plan.external_id_sql`
    builds other ids: an entry id too long for the reversal's id to fit in MAX_EXTERNAL_ID
    characters is replaced by its md5 (`ic~{md5}:v{n}:pay`), in the post and its reversal alike."""
    ver = f"CAST({version} AS VARCHAR)"
    # ':' || 'v', not ':v': text() would read ":v" inside a literal as a bind parameter.
    tail = f"':' || 'v' || {ver} || ':' || '{side}'"
    fixed = len(f"ic::v:{side}:rev")
    too_long = f"length({ident}) + length({ver}) > {MAX_EXTERNAL_ID - fixed}"
    return f"CASE WHEN {too_long} THEN 'ic~' || md5({ident}) || {tail} ELSE 'ic:' || {ident} || {tail} END"


def _book_date(conn: Connection, day: str, period: str) -> str:
    """A journal's date: the line's work date when it lies in the period booked into, else
    that period's first day (a line moved out of a closed period)."""
    return (
        f"CASE WHEN {period_sql(conn, day)} = {period} THEN {day} "
        f"ELSE CAST({period} || '-01' AS DATE) END"
    )


def _apply_closed_periods(
    conn: Connection, erp: ErpTarget, call: Callable, policy: ClosedPeriodPolicy
) -> None:
    """The ERP's closed periods, per legal entity of each journal (the employee's entity may
    have closed a month the project's still has open): `next_open` books a journal into the
    next open period (dated its first day), `hold` (or no open period within
    NEXT_OPEN_HORIZON_MONTHS) holds it; a held journal holds its whole pair (the entry's
    other journals in the plan), each with the reason."""
    span = read_frame(
        conn, "SELECT legal_entity, MIN(period) AS lo, MAX(period) AS hi FROM ic_plan GROUP BY 1"
    )
    if span.empty:
        return
    periods = call(
        lambda: erp.open_periods(
            span["legal_entity"].tolist(),
            _add_months(span["lo"].min(), 0),
            month_end(_add_months(span["hi"].max(), NEXT_OPEN_HORIZON_MONTHS)),
        )
    )
    load_temp(conn, "ic_periods", periods.astype({"is_open": bool}), _PERIOD_SCHEMA)
    next_open = (
        """(SELECT MIN(o.period) FROM ic_periods o WHERE o.legal_entity = c.legal_entity
              AND o.period > c.period AND o.is_open)"""
        if policy == "next_open"
        else "CAST(NULL AS VARCHAR)"
    )
    held = "'Posting period ' || m.period || ' is closed for ' || m.legal_entity || " + (
        f"' and no later period is open within {NEXT_OPEN_HORIZON_MONTHS} months; held "
        "until one opens'"
        if policy == "next_open"
        else "'; held (policy hold) until it reopens'"
    )
    conn.exec_driver_sql(
        f"""UPDATE ic_plan SET
              period = COALESCE(m.next_open, ic_plan.period),
              journal_date = CASE WHEN m.next_open IS NULL THEN ic_plan.journal_date
                                  ELSE CAST(m.next_open || '-01' AS DATE) END,
              state = CASE WHEN m.next_open IS NULL THEN 'held' ELSE 'planned' END,
              erp_message = CASE WHEN m.next_open IS NULL THEN {held}
                  ELSE 'Booked in ' || m.next_open || ': period ' || m.period
                       || ' is closed for ' || m.legal_entity END
            FROM (SELECT c.legal_entity, c.period, {next_open} AS next_open
                  FROM ic_periods c WHERE NOT c.is_open) m
            WHERE ic_plan.legal_entity = m.legal_entity AND ic_plan.period = m.period"""
    )
    conn.exec_driver_sql(
        """UPDATE ic_plan SET state = 'held',
                  erp_message = 'Held with the other half of its intercompany pair ('
                      || h.external_id || '): ' || h.erp_message
            FROM (SELECT pair, MIN(external_id) AS external_id, MIN(erp_message) AS erp_message
                  FROM ic_plan WHERE state = 'held' GROUP BY pair) h
            WHERE ic_plan.pair = h.pair AND ic_plan.state <> 'held'"""
    )
    conn.exec_driver_sql("DROP TABLE IF EXISTS ic_periods")


def plan_intercompany(
    conn: Connection,
    legal_entities: Sequence[str],
    accounts: Mapping[str, Mapping[str, str]],
    entries_per_batch: int = ENTRIES_PER_BATCH,
    *,
    erp: ErpTarget,
    call: Callable,
    policy: ClosedPeriodPolicy = "next_open",
) -> pd.DataFrame:
    """Build `ic_plan` (journals, with `batch_no`, `state` planned or held, `erp_message`) and
    `ic_plan_lines` on `conn`; returns the plan's journals. Reads the validated entries, the
    ledgers and the ERP's open periods; writes nothing else."""
    te = ledger_rows("posting_ledger")
    jl = ledger_rows("journal_ledger")
    entities = read_frame(
        conn,
        f"""SELECT legal_entity FROM validated_time_entries WHERE ic_legal_entity IS NOT NULL
            UNION SELECT ic_legal_entity FROM validated_time_entries
                  WHERE ic_legal_entity IS NOT NULL
            UNION SELECT legal_entity FROM journal_ledger WHERE journal_type IN {TYPES!r}""",
    )["legal_entity"].tolist()
    frame = pd.DataFrame(
        [
            {"legal_entity": e, "role": role, "account_code": code}
            for e in sorted(entities)
            for role, code in accounts_for(accounts, e).items()
        ],
        columns=["legal_entity", "role", "account_code"],
    )
    load_temp(conn, "ic_accounts", frame, _ACCOUNT_SCHEMA)
    # The customer lines of intercompany entries (current, or with a live pair): live posts,
    # and each post's reversal when one is live.
    temp_table(
        conn,
        "ic_te",
        f"""
        WITH ent AS (
            SELECT entry_id FROM validated_time_entries WHERE ic_legal_entity IS NOT NULL
            UNION SELECT journal_id FROM journal_ledger WHERE journal_type IN {TYPES!r}
        )
        SELECT p.external_id, p.entry_id, p.entry_version, p.state, p.work_date, p.period,
               r.external_id AS rev_id, r.state AS rev_state, r.work_date AS rev_work_date,
               r.period AS rev_period
        FROM {te} p
        LEFT JOIN {te} r ON r.reverses_external_id = p.external_id AND r.kind = 'reversal'
                        AND r.state IN {_LIVE_STATES}
        WHERE p.kind = 'post' AND p.state IN {_LIVE_STATES}
          AND p.entry_id IN (SELECT entry_id FROM ent)
        """,
    )
    # Intercompany journals the ERP holds (or may hold) and that no reversal cancels.
    temp_table(
        conn,
        "ic_live",
        f"""
        SELECT j.* FROM {jl} j
        WHERE j.journal_type IN {TYPES!r} AND j.kind = 'post' AND j.state IN {_LIVE_STATES}
          AND NOT EXISTS (SELECT 1 FROM {jl} r WHERE r.reverses_external_id = j.external_id
                          AND r.state IN {_LIVE_STATES})
        """,
    )
    scope_pay = _in_scope(legal_entities, "v.legal_entity")
    desc = (
        "'Intercompany ' || v.entry_id || ': ' || CAST(v.hours AS VARCHAR) || ' h x ' "
        "|| CAST(v.ic_transfer_rate AS VARCHAR) || ' ' || v.ic_rec_currency"
        " || CASE WHEN v.ic_fx_rate IS NULL THEN '' ELSE ' at ' || v.ic_rec_currency || '->' "
        "|| v.ic_pay_currency || ' ' || CASE WHEN v.ic_fx_inverse THEN '1/' ELSE '' END "
        "|| CAST(v.ic_fx_rate AS VARCHAR) || ' of ' || CAST(v.ic_fx_rate_date AS VARCHAR) "
        "|| coalesce(' (' || v.ic_fx_source || ')', '') END"
    )
    # Journals wanted: the pair of each intercompany entry whose current version's customer
    # line is confirmed in the ERP, in its period; planned by the window that posts that line
    # (the project's entity in its scope), so windows of one entity each post their pairs.
    temp_table(
        conn,
        "ic_want",
        f"""
        WITH v AS (
            SELECT v.*, t.work_date AS te_work_date, t.period AS te_period
            FROM validated_time_entries v
            JOIN ic_te t ON t.entry_id = v.entry_id AND t.entry_version = v.version
                        AND t.state = 'confirmed' AND t.rev_id IS NULL
            WHERE v.ic_legal_entity IS NOT NULL AND {scope_pay}
        )
        SELECT v.entry_id, v.version, 'ic_payable' AS journal_type, 'pay' AS side,
               v.legal_entity, v.ic_pay_currency AS currency, v.ic_pay_amount AS amount,
               v.project_code, v.te_period AS period,
               {_book_date(conn, "v.te_work_date", "v.te_period")} AS journal_date,
               'ic_cost' AS debit_role, 'ic_payable' AS credit_role, {desc} AS description
        FROM v
        UNION ALL
        SELECT v.entry_id, v.version, 'ic_receivable', 'rec', v.ic_legal_entity,
               v.ic_rec_currency, v.ic_rec_amount, v.project_code, v.te_period,
               {_book_date(conn, "v.te_work_date", "v.te_period")},
               'ic_receivable', 'ic_revenue', {desc}
        FROM v
        """,
    )
    post = ic_external_id_sql("w.entry_id", "w.version", "pay")
    post_rec = ic_external_id_sql("w.entry_id", "w.version", "rec")
    # Reversals: live journals whose customer line is reversed (or gone from the ledger's
    # live lines), dated in that reversal's period, by a window with the payable's entity
    # (the project's) in scope. New posts: wanted journals not live yet.
    temp_table(
        conn,
        "ic_plan",
        f"""
        WITH gone AS (
            SELECT l.*, t.rev_work_date, t.rev_period FROM ic_live l
            LEFT JOIN ic_te t ON t.entry_id = l.journal_id AND t.entry_version = l.journal_version
            WHERE t.external_id IS NULL OR t.rev_id IS NOT NULL
        ),
        out_of_scope AS (
            SELECT DISTINCT journal_id FROM gone g
            WHERE g.journal_type = 'ic_payable'
              AND NOT ({_in_scope(legal_entities, "g.legal_entity")})
        )
        SELECT g.external_id || ':' || 'rev' AS external_id, 'reversal' AS kind,
               g.external_id AS reverses_external_id, g.journal_id, g.journal_version,
               g.journal_type, g.legal_entity, g.currency,
               CASE WHEN g.rev_period IS NULL THEN g.journal_date
                    ELSE {_book_date(conn, "g.rev_work_date", "g.rev_period")} END
                   AS journal_date,
               coalesce(g.rev_period, g.period) AS period, g.total_debit, g.line_count,
               g.journal_id AS pair
        FROM gone g WHERE g.journal_id NOT IN (SELECT journal_id FROM out_of_scope)
        UNION ALL
        SELECT CASE WHEN w.side = 'pay' THEN {post} ELSE {post_rec} END, 'post',
               CAST(NULL AS VARCHAR), w.entry_id, w.version, w.journal_type, w.legal_entity,
               w.currency, w.journal_date, w.period, w.amount, 2, w.entry_id
        FROM ic_want w
        WHERE NOT EXISTS (SELECT 1 FROM ic_live l WHERE l.journal_id = w.entry_id
                          AND l.journal_type = w.journal_type
                          AND l.journal_version = w.version)
        """,
    )
    # Lines: a new journal's two (debit role, credit role, the amount); a reversal's mirror
    # the lines of the journal it reverses (from the ledger, debit and credit swapped).
    temp_table(
        conn,
        "ic_plan_lines",
        """
        SELECT p.external_id AS journal_external_id, 1 AS line_no, a.account_code,
               w.project_code, w.debit_role AS line_role,
               CAST(w.amount AS DECIMAL(18, 2)) AS debit, CAST(0 AS DECIMAL(18, 2)) AS credit,
               w.description
        FROM ic_plan p
        JOIN ic_want w ON w.entry_id = p.journal_id AND w.version = p.journal_version
                      AND w.journal_type = p.journal_type
        JOIN ic_accounts a ON a.legal_entity = w.legal_entity AND a.role = w.debit_role
        WHERE p.kind = 'post'
        UNION ALL
        SELECT p.external_id, 2, a.account_code, w.project_code, w.credit_role,
               CAST(0 AS DECIMAL(18, 2)), CAST(w.amount AS DECIMAL(18, 2)), w.description
        FROM ic_plan p
        JOIN ic_want w ON w.entry_id = p.journal_id AND w.version = p.journal_version
                      AND w.journal_type = p.journal_type
        JOIN ic_accounts a ON a.legal_entity = w.legal_entity AND a.role = w.credit_role
        WHERE p.kind = 'post'
        UNION ALL
        SELECT p.external_id, l.line_no, l.account_code, l.project_code, l.line_role,
               l.credit, l.debit, l.description
        FROM ic_plan p JOIN journal_ledger_lines l
          ON l.journal_external_id = p.reverses_external_id
        WHERE p.kind = 'reversal'
        """,
    )
    n = max(1, int(entries_per_batch))
    conn.exec_driver_sql("ALTER TABLE ic_plan ADD COLUMN state VARCHAR")
    conn.exec_driver_sql("ALTER TABLE ic_plan ADD COLUMN erp_message VARCHAR")
    conn.exec_driver_sql("UPDATE ic_plan SET state = 'planned'")
    _apply_closed_periods(conn, erp, call, policy)
    conn.exec_driver_sql("ALTER TABLE ic_plan ADD COLUMN batch_no INTEGER")
    conn.exec_driver_sql(
        f"""UPDATE ic_plan SET batch_no = b.batch_no FROM (
                SELECT pair, CAST((DENSE_RANK() OVER (ORDER BY pair) - 1) / {n} AS INTEGER)
                       AS batch_no
                FROM (SELECT DISTINCT pair FROM ic_plan WHERE state = 'planned') x) b
            WHERE b.pair = ic_plan.pair"""
    )
    return read_frame(conn, "SELECT * FROM ic_plan ORDER BY batch_no, pair, kind DESC")


def _write_plan(
    conn: Connection, window_id: str, track: dict[str, Any], legal_entities: Sequence[str]
) -> list[str]:
    """Into the journal ledger as `planned` or `held` (with their lines), in the caller's
    transaction. The unsent pairs this window plans for (its scope holds their project's
    entity) and no longer wants are void; another entity's window's pairs are left alone (it
    may be between planning and sending them)."""
    mine = _in_scope(legal_entities, "p.legal_entity")
    return write_journal_plan(
        conn,
        plan="ic_plan",
        plan_lines="ic_plan_lines",
        batch_id="{w}-ic-b{n:05d}",
        track={**track, "w": window_id},
        void_where=f"""journal_type IN {TYPES!r}
            AND journal_id IN (SELECT p.journal_id FROM journal_ledger p
                               WHERE p.journal_type = 'ic_payable' AND {mine})""",
    )


def post_intercompany(
    db: StagingDB,
    erp: ErpTarget,
    window_id: str,
    lock: WindowLock,
    call: Callable,
    hooks: Callable[[str, str], None] | None,
    *,
    legal_entities: Sequence[str],
    accounts: Mapping[str, Mapping[str, str]],
    track: dict[str, Any],
    closed_period_policy: ClosedPeriodPolicy = "next_open",
    entries_per_batch: int = ENTRIES_PER_BATCH,
) -> dict[str, int]:
    """Plan and send the intercompany pairs (see the module doc); counts prefixed `ic_`."""
    if not has_work(db):
        return {}
    with db.engine.connect() as conn:
        tx = conn.begin()
        try:
            plan = plan_intercompany(
                conn,
                legal_entities,
                accounts,
                entries_per_batch,
                erp=erp,
                call=call,
                policy=closed_period_policy,
            )
            batches = _write_plan(conn, window_id, track, legal_entities)
            for name in PLAN_TABLES:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
            tx.commit()
        except BaseException:
            if tx.is_active:
                tx.rollback()
            raise
    planned = plan[plan["state"] == "planned"] if len(plan) else plan
    counts = {
        "ic_journals_planned": len(planned),
        "ic_reversals_planned": int((planned["kind"] == "reversal").sum()) if len(plan) else 0,
        "ic_journals_held": len(plan) - len(planned),
    }
    sent = send_journal_batches(db, erp, window_id, lock, call, hooks, batches)
    counts.update({f"ic_{k}": v for k, v in sent.items()})
    return counts
