"""Revenue windows: recognized revenue and month-end WIP accruals posted as journals.

A revenue window is a job of its own (`revenue_window_job`), not a step of the posting
window: it runs on its own schedule (month end, or after the day's time is posted), and a
revenue problem (an account missing in the ERP's chart) never stops time lines and invoices.
It keeps the same ledger discipline and shares the posting lock with posting windows, per
legal entity (`posting.lock.WindowLock`): the two never post one entity at once.

1. **Lock**, then **settle** what a crashed window left `sent` (all ledgers, the entity's own).
2. **Compute** `revenue_recognized` as of the window's date (`staging_models.revenue`).
3. **Plan** (SQL, set-based): per legal entity, period and currency one revenue journal
   (Dr WIP / Cr revenue per project; a negative amount swaps the sides) for each open period
   up to the window's date. A project's amount in an open period is its revenue to date
   minus what the journals of closed periods before it hold, minus the same for the open
   period before it: so a change that affects a closed period (a back-dated correction, a
   budget change) lands as an adjustment in the next open period and a closed period is
   never rewritten. A journal whose lines differ from its posted version is reversed (a
   `reversal` of that version, booked in its period) and posted again as the next version.
   For every period that has ended and is open, once: a WIP accrual per legal entity and
   currency (recognized - invoiced per project: Dr unbilled receivable / Cr WIP, or Dr WIP /
   Cr deferred revenue when billing ran ahead), dated the period's last day, and its
   reversal dated the next period's first day, posted as a pair.
4. **Send** in batches (a journal's reversal and its new version, an accrual and its
   reversal, share a batch): each batch is committed `sent` before the ERP sees it, then
   confirmed from the ERP's answer (`posting.send`); a retry looks its ids up first.

External IDs: `jnl:{LE}:{YYYY-MM}:{CUR}:v{n}:post|rev` (revenue) and
`acr:{LE}:{YYYY-MM}:{CUR}:v1:post|rev` (accrual and its reversal), `posting.plan.external_id`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.erp.base import ErpTarget, ErpUnavailable
from connectors.erp.periods import month_end
from connectors.erp.retrying import RetryPolicy
from connectors.sql import load_temp, read_frame
from posting.journal_plan import write_journal_plan
from posting.lock import DEFAULT_STALE_AFTER, PostingRefused, WindowLock
from posting.plan import external_id_sql
from posting.send import send_journal_batches, settle_sent
from posting.window import abandon_dead_windows, new_window_id
from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows, posting_windows
from staging_models.revenue import compute_revenue, periods_between

#: A journal line's part, whatever the chart calls its account.
ROLES = ("wip", "revenue", "unbilled", "deferred")
#: Accounts when the configuration names none (`STAGEPOST_REVENUE_ACCOUNTS`, key `*`).
DEFAULT_ACCOUNTS: dict[str, str] = {
    "wip": "1460",  # work in progress / unbilled revenue (billings relieve it)
    "revenue": "4000",
    "unbilled": "1450",  # unbilled receivable (accrued revenue) at month end
    "deferred": "2900",  # deferred revenue (billed ahead of recognition) at month end
}
JOURNALS_PER_BATCH = 200


def accounts_for(accounts: Mapping[str, Mapping[str, str]], legal_entity: str) -> dict[str, str]:
    """The accounts of a legal entity: its own entry, else `*`, else the defaults (per role)."""
    out = dict(DEFAULT_ACCOUNTS)
    out.update(accounts.get("*", {}))
    out.update(accounts.get(legal_entity, {}))
    unknown = set(out) - set(ROLES)
    if unknown:
        raise ValueError(f"revenue accounts of {legal_entity}: unknown roles {sorted(unknown)}")
    return out


@dataclass(frozen=True)
class RevenueConfig:
    """One revenue window: its date (revenue to the end of that day's period), scope and
    who runs it."""

    as_of: date
    legal_entities: tuple[str, ...] = ()
    dry_run: bool = False
    accounts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    journals_per_batch: int = JOURNALS_PER_BATCH
    operator: str | None = None
    note: str | None = None
    run_id: str | None = None

    def as_json(self) -> str:
        return json.dumps(
            {
                "window": "revenue",
                "as_of": self.as_of.isoformat(),
                "legal_entities": list(self.legal_entities),
                "dry_run": self.dry_run,
                "operator": self.operator,
            }
        )


@dataclass
class RevenueWindowResult:
    window_id: str
    status: str  # completed | stopped | dry_run
    message: str
    counts: dict[str, Any]
    plan: pd.DataFrame  # one row per planned journal


_PERIOD_SCHEMA = pa.schema(
    [("legal_entity", pa.string()), ("period", pa.string()), ("is_open", pa.bool_())]
)
_ACCOUNT_SCHEMA = pa.schema(
    [("legal_entity", pa.string()), ("role", pa.string()), ("account_code", pa.string())]
)

#: Journals the ERP holds (or may hold) and that no reversal cancels.
_LIVE = f"""
    SELECT j.* FROM {ledger_rows("journal_ledger")} j
    WHERE j.kind = 'post' AND j.state IN ('sent', 'confirmed')
      AND NOT EXISTS (SELECT 1 FROM {ledger_rows("journal_ledger")} r
                      WHERE r.reverses_external_id = j.external_id
                        AND r.state IN ('sent', 'confirmed'))
"""


def _fingerprint(alias: str) -> str:
    """A journal's lines as one text (what a new version is compared on)."""
    return (
        f"string_agg({alias}.project_code || '|' || {alias}.line_role || '|' || "
        f"{alias}.account_code || '|' || CAST({alias}.debit AS VARCHAR) || '|' || "
        f"CAST({alias}.credit AS VARCHAR), ';' ORDER BY {alias}.line_no)"
    )


def _scope_sql(legal_entities: Sequence[str], alias: str) -> tuple[str, dict]:
    if not legal_entities:
        return "TRUE", {}
    params = {f"le{i}": e for i, e in enumerate(sorted(set(legal_entities)))}
    return f"{alias}.legal_entity IN ({', '.join(':' + k for k in params)})", params


def _lines_sql(source: str, first_role: str, second_role: str) -> str:
    """Two lines per project of `amount` in `source` (journal_id, project_code, k: the
    project's number in its journal, amount): the first role debited and the second credited
    when the amount is positive, the other way round when it is negative (SQL role texts)."""
    return f"""
        SELECT d.journal_id, d.project_code, 2 * d.k - 1 AS line_no, {first_role} AS line_role,
               CAST(CASE WHEN d.amount > 0 THEN d.amount ELSE 0 END AS DECIMAL(18, 2)) AS debit,
               CAST(CASE WHEN d.amount < 0 THEN -d.amount ELSE 0 END AS DECIMAL(18, 2)) AS credit
        FROM {source} d
        UNION ALL
        SELECT d.journal_id, d.project_code, 2 * d.k, {second_role},
               CAST(CASE WHEN d.amount < 0 THEN -d.amount ELSE 0 END AS DECIMAL(18, 2)),
               CAST(CASE WHEN d.amount > 0 THEN d.amount ELSE 0 END AS DECIMAL(18, 2))
        FROM {source} d
    """


_ACCRUAL_ROLE = "CASE WHEN d.amount > 0 THEN 'unbilled' ELSE 'deferred' END"


def _temp(conn: Connection, name: str, sql: str, params: dict | None = None) -> None:
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    conn.execute(sa.text(f"CREATE TEMP TABLE {name} AS {sql}"), params or {})


def _period_of(conn: Connection, col: str) -> str:
    if conn.dialect.name == "duckdb":
        return f"strftime({col}, '%Y-%m')"
    return f"to_char({col}, 'YYYY-MM')"


PLAN_TABLES = ("rev_periods", "rev_accounts", "rev_desired", "rev_plan", "rev_plan_lines")


def plan_journals(
    conn: Connection, erp: ErpTarget, config: RevenueConfig, call: Callable
) -> pd.DataFrame:
    """Build `rev_plan` (journals) and `rev_plan_lines` (their lines) on `conn`; returns the
    plan's journals. Reads `revenue_recognized` and the journal ledger; writes nothing else."""
    scope, params = _scope_sql(config.legal_entities, "r")
    span = read_frame(
        conn,
        f"SELECT DISTINCT legal_entity FROM revenue_recognized r WHERE {scope}",
        params,
    )
    entities = sorted(span["legal_entity"].tolist())
    lo = read_frame(conn, "SELECT MIN(period) AS lo FROM revenue_recognized")["lo"].iloc[0]
    last = config.as_of.strftime("%Y-%m")
    nxt = (month_end(config.as_of) + timedelta(days=1)).strftime("%Y-%m")
    if entities and lo is not None:
        months = periods_between(date.fromisoformat(f"{lo}-01"), date.fromisoformat(f"{nxt}-01"))
        periods = call(
            lambda: erp.open_periods(
                entities,
                date.fromisoformat(f"{months[0]}-01"),
                month_end(date.fromisoformat(f"{months[-1]}-01")),
            )
        )
    else:
        periods = pd.DataFrame({"legal_entity": [], "period": [], "is_open": []})
    load_temp(conn, "rev_periods", periods.astype({"is_open": bool}), _PERIOD_SCHEMA)
    accounts = pd.DataFrame(
        [
            {"legal_entity": e, "role": role, "account_code": code}
            for e in entities
            for role, code in accounts_for(config.accounts, e).items()
        ],
        columns=["legal_entity", "role", "account_code"],
    )
    load_temp(conn, "rev_accounts", accounts, _ACCOUNT_SCHEMA)
    p = {**params, "last": last}
    jid = "r.legal_entity || ':' || r.period || ':' || r.currency"
    # Desired lines: revenue journals of open periods, accruals of ended open periods.
    _temp(
        conn,
        "rev_desired",
        f"""
        WITH live_amt AS (  -- what live revenue journals hold per project and period
            SELECT j.legal_entity, j.period, l.project_code, SUM(l.credit - l.debit) AS amount
            FROM ({_LIVE}) j JOIN journal_ledger_lines l ON l.journal_external_id = j.external_id
            WHERE j.journal_type = 'revenue' AND l.line_role = 'revenue'
            GROUP BY j.legal_entity, j.period, l.project_code
        ),
        closed_amt AS (
            SELECT r.project_code, r.period,
                   SUM(CASE WHEN a.period < r.period THEN a.amount ELSE 0 END) AS held
            FROM revenue_recognized r
            JOIN live_amt a ON a.project_code = r.project_code
                           AND a.legal_entity = r.legal_entity
            JOIN rev_periods c ON c.legal_entity = a.legal_entity AND c.period = a.period
                              AND NOT c.is_open
            GROUP BY r.project_code, r.period
        ),
        opn AS (
            SELECT r.legal_entity, r.period, r.currency, r.project_code,
                   r.recognized_to_date - coalesce(h.held, 0) AS adj
            FROM revenue_recognized r
            JOIN rev_periods o ON o.legal_entity = r.legal_entity AND o.period = r.period
                              AND o.is_open
            LEFT JOIN closed_amt h ON h.project_code = r.project_code AND h.period = r.period
            WHERE {scope} AND r.period <= :last
        ),
        amt AS (
            SELECT o.*, o.adj - coalesce(LAG(o.adj) OVER (
                PARTITION BY o.project_code ORDER BY o.period), 0) AS amount
            FROM opn o
        ),
        d AS (
            SELECT 'revenue' AS journal_type,
                   a.legal_entity || ':' || a.period || ':' || a.currency AS journal_id,
                   a.legal_entity, a.period, a.currency, a.project_code, a.amount,
                   ROW_NUMBER() OVER (PARTITION BY a.legal_entity, a.period, a.currency
                                      ORDER BY a.project_code) AS k
            FROM amt a WHERE a.amount <> 0
        ),
        acr AS (  -- ended, open periods without an accrual in the ledger yet
            SELECT 'wip_accrual' AS journal_type, {jid} AS journal_id, r.legal_entity,
                   r.period, r.currency, r.project_code, r.wip AS amount,
                   ROW_NUMBER() OVER (PARTITION BY r.legal_entity, r.period, r.currency
                                      ORDER BY r.project_code) AS k
            FROM revenue_recognized r
            JOIN rev_periods o ON o.legal_entity = r.legal_entity AND o.period = r.period
                              AND o.is_open
            WHERE {scope} AND r.period < :last AND r.wip <> 0
              AND NOT EXISTS (SELECT 1 FROM {ledger_rows("journal_ledger")} x
                              WHERE x.journal_type = 'wip_accrual'
                                AND x.journal_id = {jid}
                                AND x.state IN ('sent', 'confirmed'))
        ),
        -- Revenue: Dr WIP / Cr revenue. Accrual: Dr unbilled receivable / Cr WIP, or, billed
        -- ahead (a negative WIP), Dr WIP / Cr deferred revenue.
        jl AS (
            SELECT 'revenue' AS journal_type, x.*, d.legal_entity, d.period, d.currency
            FROM ({_lines_sql("d", "'wip'", "'revenue'")}) x
            JOIN d ON d.journal_id = x.journal_id AND d.project_code = x.project_code
            UNION ALL
            SELECT 'wip_accrual', x.*, d.legal_entity, d.period, d.currency
            FROM ({_lines_sql("acr", _ACCRUAL_ROLE, "'wip'")}) x
            JOIN acr d ON d.journal_id = x.journal_id AND d.project_code = x.project_code
        )
        SELECT l.*, a.account_code FROM jl l
        JOIN rev_accounts a ON a.legal_entity = l.legal_entity AND a.role = l.line_role
        """,
        p,
    )
    _plan_from_desired(conn, config, p)
    return read_frame(conn, "SELECT * FROM rev_plan ORDER BY batch_no, journal_id, kind DESC")


def _plan_from_desired(conn: Connection, config: RevenueConfig, p: dict) -> None:
    """Journals to send: a changed revenue journal's reversal and new version; new accruals
    with their reversals."""
    jscope, _ = _scope_sql(config.legal_entities, "j")
    post_rev = external_id_sql("jnl", "c.journal_id", "c.new_version", "post")
    rev_rev = external_id_sql("jnl", "c.journal_id", "c.live_version", "rev")
    acr_post = external_id_sql("acr", "c.journal_id", "1", "post")
    acr_rev = external_id_sql("acr", "c.journal_id", "1", "rev")
    _temp(
        conn,
        "rev_cmp",
        f"""
        WITH want AS (
            SELECT d.journal_type, d.journal_id, MIN(d.legal_entity) AS legal_entity,
                   MIN(d.period) AS period, MIN(d.currency) AS currency,
                   SUM(d.debit) AS total_debit, {_fingerprint("d")} AS fp
            FROM rev_desired d GROUP BY d.journal_type, d.journal_id
        ),
        have AS (
            SELECT j.journal_type, j.journal_id, j.external_id, j.journal_version,
                   {_fingerprint("l")} AS fp
            FROM ({_LIVE}) j
            JOIN journal_ledger_lines l ON l.journal_external_id = j.external_id
            JOIN rev_periods o ON o.legal_entity = j.legal_entity AND o.period = j.period
                              AND o.is_open
            WHERE j.journal_type = 'revenue' AND {jscope} AND j.period <= :last
            GROUP BY j.journal_type, j.journal_id, j.external_id, j.journal_version
        ),
        top AS (
            SELECT journal_id, MAX(journal_version) AS v FROM {ledger_rows("journal_ledger")} t
            WHERE t.journal_type = 'revenue' AND t.state IN ('sent', 'confirmed')
            GROUP BY journal_id
        )
        SELECT coalesce(w.journal_type, h.journal_type) AS journal_type,
               coalesce(w.journal_id, h.journal_id) AS journal_id,
               w.legal_entity, w.period, w.currency, w.total_debit, w.fp AS want_fp,
               h.external_id AS live_id, h.journal_version AS live_version, h.fp AS have_fp,
               coalesce(t.v, 0) + 1 AS new_version
        FROM want w
        FULL OUTER JOIN have h ON h.journal_id = w.journal_id AND h.journal_type = w.journal_type
        LEFT JOIN top t ON t.journal_id = coalesce(w.journal_id, h.journal_id)
                       AND coalesce(w.journal_type, h.journal_type) = 'revenue'
        WHERE h.fp IS NULL OR w.fp IS NULL OR h.fp <> w.fp
        """,
        p,
    )
    _temp(
        conn,
        "rev_plan",
        f"""
        SELECT {rev_rev} AS external_id, 'reversal' AS kind, c.live_id AS reverses_external_id,
               c.journal_id, c.live_version AS journal_version, c.journal_type,
               j.legal_entity, j.currency, j.journal_date, j.period, j.total_debit,
               j.line_count, c.journal_id AS pair
        FROM rev_cmp c JOIN journal_ledger j ON j.external_id = c.live_id
        WHERE c.journal_type = 'revenue'
        UNION ALL
        SELECT {post_rev}, 'post', CAST(NULL AS VARCHAR), c.journal_id, c.new_version,
               c.journal_type, c.legal_entity, c.currency,
               CAST(NULL AS DATE), c.period, c.total_debit, 0, c.journal_id
        FROM rev_cmp c WHERE c.journal_type = 'revenue' AND c.want_fp IS NOT NULL
        UNION ALL
        SELECT {acr_post}, 'post', CAST(NULL AS VARCHAR), c.journal_id, 1, c.journal_type,
               c.legal_entity, c.currency, CAST(NULL AS DATE), c.period, c.total_debit, 0,
               c.journal_id
        FROM rev_cmp c WHERE c.journal_type = 'wip_accrual'
        UNION ALL
        SELECT {acr_rev}, 'reversal', {acr_post}, c.journal_id, 1, c.journal_type,
               c.legal_entity, c.currency, CAST(NULL AS DATE), c.period, c.total_debit, 0,
               c.journal_id
        FROM rev_cmp c WHERE c.journal_type = 'wip_accrual'
        """,
    )
    # Dates: a revenue journal and an accrual on the period's last day; an accrual's reversal
    # on the next period's first day, in that period.
    ends = _period_end_sql(conn, "rev_plan.period")
    conn.exec_driver_sql(
        f"""UPDATE rev_plan SET journal_date = {ends} WHERE journal_date IS NULL"""
    )
    conn.exec_driver_sql(
        f"""UPDATE rev_plan SET journal_date = journal_date + 1,
                  period = {_period_of(conn, "journal_date + 1")}
            WHERE journal_type = 'wip_accrual' AND kind = 'reversal'"""
    )
    # Lines: a new journal's from the desired lines (accounts by role); a reversal's mirror
    # what it reverses (its lines from the ledger, or the accrual's own, debit and credit
    # swapped).
    _temp(
        conn,
        "rev_plan_lines",
        """
        SELECT p.external_id AS journal_external_id, CAST(d.line_no AS INTEGER) AS line_no,
               d.account_code, d.project_code, d.line_role,
               CASE WHEN p.kind = 'post' THEN d.debit ELSE d.credit END AS debit,
               CASE WHEN p.kind = 'post' THEN d.credit ELSE d.debit END AS credit,
               CAST(NULL AS VARCHAR) AS description
        FROM rev_plan p
        JOIN rev_desired d ON d.journal_id = p.journal_id AND d.journal_type = p.journal_type
        WHERE p.kind = 'post' OR p.journal_type = 'wip_accrual'
        UNION ALL
        SELECT p.external_id, l.line_no, l.account_code, l.project_code, l.line_role,
               l.credit, l.debit, l.description
        FROM rev_plan p JOIN journal_ledger_lines l ON l.journal_external_id = p.reverses_external_id
        WHERE p.kind = 'reversal' AND p.journal_type = 'revenue'
        """,
    )
    conn.exec_driver_sql(
        """UPDATE rev_plan SET line_count = (SELECT COUNT(*) FROM rev_plan_lines l
                                             WHERE l.journal_external_id = rev_plan.external_id)"""
    )
    n = max(1, int(config.journals_per_batch))
    conn.exec_driver_sql("ALTER TABLE rev_plan ADD COLUMN batch_no INTEGER")
    conn.exec_driver_sql(
        f"""UPDATE rev_plan SET batch_no = b.batch_no FROM (
                SELECT pair, journal_type,
                       CAST((DENSE_RANK() OVER (ORDER BY journal_type DESC, pair) - 1) / {n}
                            AS INTEGER) AS batch_no
                FROM (SELECT DISTINCT pair, journal_type FROM rev_plan) x) b
            WHERE b.pair = rev_plan.pair AND b.journal_type = rev_plan.journal_type"""
    )


def _period_end_sql(conn: Connection, period: str) -> str:
    first = f"CAST({period} || '-01' AS DATE)"
    if conn.dialect.name == "duckdb":
        return f"CAST(last_day({first}) AS DATE)"
    return f"CAST(({first} + INTERVAL '1 month' - INTERVAL '1 day') AS DATE)"


#: A revenue window's journal batch (`write_journal_plan`'s `{w}` window, `{n}` number).
JOURNAL_BATCH_ID = "{w}-jnl-b{n:05d}"


def _write_plan(
    conn: Connection, window_id: str, track: dict, legal_entities: Sequence[str]
) -> list[str]:
    """Into the ledger as `planned` (with their lines), in the caller's transaction: the plan's
    journals. Other unsent revenue and accrual journals in scope are void (the plan no longer
    wants them); the intercompany journals posting windows plan are not the revenue window's."""
    scope, params = _scope_sql(legal_entities, "journal_ledger")
    return write_journal_plan(
        conn,
        plan="rev_plan",
        plan_lines="rev_plan_lines",
        batch_id=JOURNAL_BATCH_ID,
        track={**track, "w": window_id},
        void_where=f"state = 'planned' AND journal_type IN ('revenue', 'wip_accrual') AND {scope}",
        void_params=params,
        states="'planned', CAST(NULL AS VARCHAR)",
    )


def _drop(conn: Connection) -> None:
    for name in (*PLAN_TABLES, "rev_cmp"):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def _record(db: StagingDB, window_id: str, config: RevenueConfig, now: datetime, **kw) -> None:
    with db.begin() as conn:
        conn.execute(
            posting_windows.insert().values(
                window_id=window_id,
                run_id=config.run_id,
                launched_by=config.operator,
                config=config.as_json(),
                note=config.note,
                started_at=now,
                **kw,
            )
        )


def _finish(db: StagingDB, window_id: str, status: str, message: str, counts: dict) -> None:
    with db.begin() as conn:
        conn.execute(
            posting_windows.update()
            .where(posting_windows.c.window_id == window_id)
            .values(
                status=status,
                message=message,
                finished_at=datetime.now(UTC),
                counts=json.dumps(counts, default=str),
            )
        )


def run_revenue_window(
    db: StagingDB,
    erp: ErpTarget,
    config: RevenueConfig,
    *,
    window_id: str | None = None,
    call: Callable | None = None,
    hooks: Callable[[str, str], None] | None = None,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> RevenueWindowResult:
    """Compute revenue as of `config.as_of` and post its journals (see the module doc)."""
    now = datetime.now(UTC)
    window_id = window_id or new_window_id(now)
    call = call or RetryPolicy().caller()
    _record(db, window_id, config, now, status="running")
    lock = WindowLock(db, window_id, config.legal_entities, stale_after)
    try:
        lock.acquire()
    except PostingRefused as e:
        _finish(db, window_id, "refused", str(e), {})
        raise
    counts: dict[str, Any] = {}
    try:
        abandon_dead_windows(db, window_id, now)
        counts.update(settle_sent(db, erp, call, config.legal_entities))
        rev = compute_revenue(db, config.as_of)
        counts["revenue_rows"] = rev.rows
        with db.engine.connect() as conn:
            tx = conn.begin()
            try:
                plan = plan_journals(conn, erp, config, call)
                counts["journals_planned"] = len(plan)
                if config.dry_run:
                    tx.rollback()
                    _finish(db, window_id, "dry_run", f"{len(plan)} journals planned", counts)
                    return RevenueWindowResult(window_id, "dry_run", "dry run", counts, plan)
                track = {"w": window_id, "run": config.run_id, "by": config.operator, "now": now}
                batches = _write_plan(conn, window_id, track, config.legal_entities)
                _drop(conn)
                tx.commit()
            except BaseException:
                if tx.is_active:
                    tx.rollback()
                raise
        if hooks:
            hooks("planned", "")
        try:
            counts.update(send_journal_batches(db, erp, window_id, lock, call, hooks, batches))
        except ErpUnavailable as e:
            counts["status"] = "stopped"
            msg = f"Stopped: the ERP is unavailable ({e}); the next revenue window finishes it"
            _finish(db, window_id, "stopped", msg, counts)
            return RevenueWindowResult(window_id, "stopped", msg, counts, plan)
        msg = (
            f"{counts.get('confirmed', 0)} journals confirmed, {counts.get('rejected', 0)} rejected"
        )
        _finish(db, window_id, "completed", msg, counts)
        return RevenueWindowResult(window_id, "completed", msg, counts, plan)
    except BaseException as e:
        if not isinstance(e, ErpUnavailable):
            _finish(db, window_id, "failed", str(e)[:500], counts)
        raise
    finally:
        lock.release()
