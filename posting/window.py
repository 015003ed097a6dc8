"""The posting window: controlled, idempotent, crash-safe posting of validated batches.

One window = check the posting hours -> take the lock -> settle what a crashed
window left `sent` -> plan (set-based, see `posting.plan`) -> send it in batches,
each written into the ledger as `sent` just before it goes -> release the lock.
Pure Python + SQL; the Dagster asset is a thin wrapper (assets/posting.py).

Why it is safe to kill at any point:
- what a plan changes in the ledger (lines re-planned, void, held) commits at once;
- a batch is committed `sent` (new lines: inserted so) before the ERP sees it, and
  confirmed after; a line stays `sent` ("may be in the ERP") until its answer is
  recorded; a planned line the ledger does not have yet was never sent, and the next
  window plans it again;
- a `planned` line is never in the ERP, so a batch's first attempt posts without
  a lookup; where the ERP may hold a line (a retry after a lost response, the
  `sent` lines a crash left) it is looked up first and only the missing ones are
  created, so a batch the ERP took is confirmed, never posted twice;
- the next window first settles all `sent` lines that way;
- external IDs are deterministic, so a retry never mints a new one.

A transient `ErpUnavailable` is retried with exponential backoff; a lasting
outage stops the window cleanly (status `stopped`), leaving lines planned or
sent, and the next window finishes them.
"""

from __future__ import annotations

import getpass
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from config.posting_hours import describe_refusal, is_allowed, parse_posting_hours
from connectors.erp.base import ErpTarget, ErpUnavailable
from connectors.erp.retrying import RetryPolicy
from posting.intercompany import post_intercompany
from posting.lock import (
    DEFAULT_STALE_AFTER,
    PostingLocked,
    PostingRefused,
    WindowLock,
)
from posting.plan import (
    BillingHoldWork,
    ClosedPeriodPolicy,
    PendingLines,
    Scope,
    build_plan,
    drop_plan,
    merge_plan,
    plan_counts,
    track_params,
)
from posting.preview import (
    DEFAULT_DETAIL_LIMIT,
    plan_detail,
    plan_summary,
    write_preview_xlsx,
)
from posting.send import send_batches, settle_sent
from staging_models.billing_holds import held_invoices
from staging_models.db import SCRATCH_STATISTICS_TARGET, StagingDB
from staging_models.ledger_tables import ledger_rows, posting_windows

#: Step names passed to `hooks` (tests inject faults there).
STEPS = ("planned", "batch_marked_sent", "batch_posted", "batch_recorded")


class PostingHoursClosed(PostingRefused):
    """Outside the allowed posting hours and no override reason given."""


class PlanTooLarge(PostingRefused):
    """The plan has more lines than `max_lines` allows."""


@dataclass
class WindowConfig:
    """What a posting window covers and how it behaves."""

    legal_entities: Sequence[str] = ()
    date_from: date | None = None
    date_to: date | None = None
    dry_run: bool = True
    max_lines: int | None = None  # refuse a plan with more sendable lines (a safety stop)
    note: str | None = None
    override_reason: str | None = None  # post outside the posting hours, recorded
    closed_period_policy: ClosedPeriodPolicy = "next_open"
    billing_hold_time_and_expenses: BillingHoldWork = "post"  # a held project's invoices: held
    posting_hours: str | Sequence[str] | None = None  # e.g. "mon-fri 17:00-20:00 Europe/Berlin"
    batch_size: int = 20_000
    invoice_batch_size: int = 500
    expense_batch_size: int = 2_000
    include_invoices: bool = True
    preview_dir: Path | None = None
    preview_detail_limit: int = DEFAULT_DETAIL_LIMIT
    run_id: str | None = None
    launched_by: str | None = None
    lock_stale_after: timedelta = DEFAULT_STALE_AFTER
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Intercompany pairs' accounts per legal entity and role (`*`: every entity); empty:
    #: `posting.intercompany.DEFAULT_ACCOUNTS` (STAGEPOST_INTERCOMPANY_ACCOUNTS).
    intercompany_accounts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def scope(self) -> Scope:
        return Scope(tuple(self.legal_entities or ()), self.date_from, self.date_to)

    def as_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, default=str, sort_keys=True)


@dataclass
class WindowResult:
    """What a window did. `status`: dry_run | completed | stopped."""

    window_id: str
    status: str
    message: str
    counts: dict[str, Any]
    summary: pd.DataFrame
    preview_path: Path | None = None
    rejections: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Invoices a billing hold keeps from the ERP after this window (all of them, not only
    #: this window's), with reason, since when and age in days (`billing_holds.COLUMNS`).
    held_invoices: pd.DataFrame = field(default_factory=pd.DataFrame)


def _check_staging_free(db: StagingDB) -> None:
    """A DuckDB staging file admits one process: if another holds it, say so plainly."""
    try:
        db.scalar("SELECT 1")
    except sa.exc.OperationalError as e:
        text = str(getattr(e, "orig", e))
        if "Could not set lock on file" not in text:
            raise
        holder = text.partition("Conflicting lock is held in ")[2].split(". See")[0]
        raise PostingLocked(
            f"The staging database is open in another process ({holder or 'unknown'}): "
            "another posting window or pipeline run is using it. Wait for it to finish."
        ) from None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER in a container
        return "unknown"


def new_window_id(now: datetime) -> str:
    return f"W{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


# -- one window: its context and its record ------------------------------------------------------


@dataclass
class _Window:
    """What every step of one window needs: where it posts, its settings, who launched it,
    when, the ERP retry (`call`) and the test hooks."""

    db: StagingDB
    erp: ErpTarget
    config: WindowConfig
    window_id: str
    launched_by: str
    now: datetime
    call: Callable
    hooks: Callable[[str, str], None] | None

    def hook(self, step: str, batch_id: str = "") -> None:
        if self.hooks:
            self.hooks(step, batch_id)

    def record(
        self,
        status: str,
        message: str | None = None,
        counts: dict | None = None,
        finished: bool = False,
    ) -> None:
        """The window's row in `posting_windows`, as it starts (or is refused)."""
        config = self.config
        with self.db.begin() as conn:
            conn.execute(
                posting_windows.insert().values(
                    window_id=self.window_id,
                    run_id=config.run_id,
                    launched_by=self.launched_by,
                    config=config.as_json(),
                    status=status,
                    note=config.note,
                    override_reason=config.override_reason,
                    message=message,
                    started_at=self.now,
                    finished_at=datetime.now(UTC) if finished else None,
                    counts=json.dumps(counts, default=str) if counts is not None else None,
                )
            )

    def refuse(self, message: str) -> None:
        self.record("refused", message, finished=True)

    def finish(self, outcome: _Outcome) -> None:
        with self.db.begin() as conn:
            conn.execute(
                posting_windows.update()
                .where(posting_windows.c.window_id == self.window_id)
                .values(
                    status=outcome.status,
                    message=outcome.message,
                    finished_at=datetime.now(UTC),
                    counts=json.dumps(outcome.counts, default=str),
                )
            )


@dataclass
class _Outcome:
    """How a posting window ends; `failed` until a step says otherwise."""

    status: str = "failed"
    message: str = "failed"
    counts: dict[str, Any] = field(default_factory=dict)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    path: Path | None = None


# -- settling and sending -------------------------------------------------------------------------


def _ledger_groups(
    db: StagingDB, window_id: str, *, batch: str | None = None, but: str | None = None
) -> pd.DataFrame:
    """This window's ledger rows counted and summed per document, state and currency: only
    those of `batch`, or all but those of `but` (if given)."""
    where, params = "window_id = :w", {"w": window_id}
    if batch is not None:
        where, params["b"] = f"{where} AND batch_id = :b", batch
    elif but is not None:
        where, params["b"] = f"{where} AND batch_id IS DISTINCT FROM :b", but
    return db.query_df(
        f"""SELECT 'time_line' AS doc, state, currency, COUNT(*) AS n, SUM(hours) AS hours,
                  SUM(amount) AS amount
           FROM {ledger_rows("posting_ledger")} l WHERE {where} GROUP BY state, currency
           UNION ALL
           SELECT 'invoice', state, currency, COUNT(*), NULL, SUM(total_amount)
           FROM {ledger_rows("invoice_ledger")} l WHERE {where} GROUP BY state, currency
           UNION ALL
           SELECT 'expense_line', state, currency, COUNT(*), NULL, SUM(amount)
           FROM {ledger_rows("expense_ledger")} l WHERE {where} GROUP BY state, currency""",
        params,
    )


def _ledger_state(df: pd.DataFrame) -> dict[str, Any]:
    """Counts, hours and amounts per state of a window's ledger rows (`_ledger_groups`; a
    document, state and currency may come in several rows: they add up)."""
    out: dict[str, Any] = {}
    for (doc, state), g in df.groupby(["doc", "state"]):
        out[f"{doc}s_{state}"] = int(g["n"].sum())
    confirmed = df[df["state"] == "confirmed"]
    out["hours_confirmed"] = str(sum((h for h in confirmed["hours"] if h is not None), Decimal(0)))
    out["amount_confirmed"] = {
        cur: str(sum(g["amount"], Decimal(0))) for cur, g in confirmed.groupby("currency")
    }
    # Per document kind too: an invoice bills time already counted as time lines.
    for doc in ("time_line", "invoice", "expense_line"):
        mine = confirmed[confirmed["doc"] == doc]
        out[f"amount_confirmed_{doc}s"] = {
            cur: str(sum(g["amount"], Decimal(0))) for cur, g in mine.groupby("currency")
        }
    return out


@dataclass
class _Closing:
    """A window's closing counts, read mostly while the ERP books its last batch: once every
    batch is in the ledger, the worker takes the ledgers' statistics and counts the window's
    rows but the last batch's (`written`); the window's end adds the last batch, once its
    answer is recorded (`counts`). Nothing else writes the window's rows in between, unless
    the window did not complete: then `counts` reads them all."""

    db: StagingDB
    window_id: str
    last: str | None = None
    early: pd.DataFrame | None = None

    def written(self, last: str | None) -> None:
        """In the staging worker, every batch in the ledger, `last` (if any) at the ERP."""
        _analyze_ledgers(self.db, sample=True)
        self.early = _ledger_groups(self.db, self.window_id, but=last)
        self.last = last

    def counts(self, completed: bool) -> dict[str, Any]:
        if not completed or self.early is None:
            return _ledger_state(_ledger_groups(self.db, self.window_id))
        if self.last is None:
            return _ledger_state(self.early)
        last = _ledger_groups(self.db, self.window_id, batch=self.last)
        return _ledger_state(pd.concat([self.early, last], ignore_index=True))


_REJECTION_COLUMNS = (
    "document",
    "external_id",
    "legal_entity",
    "project_code",
    "period",
    "erp_message",
)


def _rejections(
    db: StagingDB, window_id: str, counts: dict[str, Any], limit: int = 1000
) -> pd.DataFrame:
    """The window's rejected lines (the first `limit`); not looked for when its closing
    counts (`_ledger_state`) have none (a scan of the window's lines)."""
    if not any(counts.get(f"{doc}s_rejected") for doc in ("time_line", "invoice", "expense_line")):
        return pd.DataFrame(columns=list(_REJECTION_COLUMNS))
    return db.query_df(
        """SELECT * FROM (
               SELECT 'time_line' AS document, external_id, legal_entity, project_code, period,
                      erp_message FROM posting_ledger WHERE window_id = :w AND state = 'rejected'
               UNION ALL
               SELECT 'invoice', external_id, legal_entity, project_code, period, erp_message
               FROM invoice_ledger WHERE window_id = :w AND state = 'rejected'
               UNION ALL
               SELECT 'expense_line', external_id, legal_entity, project_code, period, erp_message
               FROM expense_ledger WHERE window_id = :w AND state = 'rejected') r
           ORDER BY external_id LIMIT :n""",
        {"w": window_id, "n": limit},
    )


# -- the window -----------------------------------------------------------------------------------


def _plan_and_preview(
    conn: sa.Connection, w: _Window
) -> tuple[dict[str, int], pd.DataFrame, Path | None]:
    """Plan the window on `conn` (temporary tables) and write the preview workbook if asked."""
    config = w.config
    build_plan(
        conn,
        w.erp,
        config.scope(),
        policy=config.closed_period_policy,
        batch_size=config.batch_size,
        invoice_batch_size=config.invoice_batch_size,
        fetch=w.call,
        include_invoices=config.include_invoices,
        expense_batch_size=config.expense_batch_size,
        billing_hold_time_and_expenses=config.billing_hold_time_and_expenses,
    )
    counts = plan_counts(conn)
    summary = plan_summary(conn)
    if config.preview_dir is None:
        return counts, summary, None
    total = int(summary["lines"].sum()) if not summary.empty else 0
    kind = "Dry run" if config.dry_run else "Posting window"
    path = write_preview_xlsx(
        Path(config.preview_dir) / f"posting_preview_{w.window_id}.xlsx",
        summary,
        plan_detail(conn, config.preview_detail_limit),
        total_lines=total,
        heading=f"{kind} {w.window_id} by {w.launched_by} at {w.now:%Y-%m-%d %H:%M %Z}",
    )
    return counts, summary, path


def master_data_frames(
    db: StagingDB,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validated master data as `ErpTarget.ensure_master_data` takes it."""
    valid = "is_current AND state = 'valid'"
    return (
        db.query_df(
            f"""SELECT customer_id, min(customer_name) AS customer_name FROM stg_projects
                WHERE {valid} GROUP BY customer_id ORDER BY customer_id"""
        ),
        db.query_df(
            f"""SELECT employee_id, employee_name, legal_entity FROM stg_employees
                WHERE {valid} ORDER BY employee_id"""
        ),
        db.query_df(
            f"""SELECT project_code, project_name, customer_id, legal_entity, currency
                FROM stg_projects WHERE {valid} ORDER BY project_code"""
        ),
        db.query_df(
            f"""SELECT project_code, task_code, task_name FROM stg_project_tasks
                WHERE {valid} ORDER BY project_code, task_code"""
        ),
    )


def _ensure_master_data(db: StagingDB, erp: ErpTarget) -> None:
    """The ERP must know every customer, employee, project and task a line refers to."""
    erp.ensure_master_data(*master_data_frames(db))


def _analyze_ledgers(db: StagingDB, *, sample: bool = False) -> None:
    """PostgreSQL staging: fresh planner statistics for the ledgers (autovacuum may lag a
    window that just wrote thousands of lines, and stale ones lead the plan into nested
    loops). DuckDB keeps its statistics current.

    At a window's start in full; once every batch is in the ledger (`sample`, in the staging
    worker while the ERP books the last batch: `_Closing.written`), from a small sample, for
    what reads the ledger next (a reconciliation): a ledger never analyzed since it grew by 842,680 lines
    was planned as 4,213, and its lines for a few entries were found by a scan of it whole
    instead of by its entry index. The sample costs a few hundredths of a second."""
    if not db.is_duckdb:
        with db.begin() as conn:
            db.analyze(
                conn,
                "posting_ledger",
                "invoice_ledger",
                "expense_ledger",
                target=SCRATCH_STATISTICS_TARGET if sample else None,
            )


def _sendable(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if k.endswith("_planned"))


# -- the steps of a window ------------------------------------------------------------------------


def _dry_run(w: _Window) -> WindowResult:
    """Plan and preview, post nothing, leave nothing behind but the window's record."""
    with w.db.engine.connect() as conn:
        counts, summary, path = _plan_and_preview(conn, w)
        conn.rollback()  # only temporary tables were written; leave nothing behind
    counts = {**counts, "lines_sendable": _sendable(counts)}
    message = f"Dry run: {counts['lines_sendable']} lines would be posted; nothing was posted."
    w.record("dry_run", message, counts, finished=True)
    return WindowResult(w.window_id, "dry_run", message, counts, summary, path)


def _check_posting_hours(w: _Window) -> None:
    """Refuse outside the posting hours unless an override reason is given."""
    rules = parse_posting_hours(w.config.posting_hours)
    if not is_allowed(rules, w.now) and not (w.config.override_reason or "").strip():
        message = describe_refusal(rules, w.now)
        w.refuse(message)
        raise PostingHoursClosed(message)


def _take_lock(w: _Window) -> WindowLock:
    """The window's lock rows: one per legal entity of its scope, or the global one."""
    lock = WindowLock(
        w.db, w.window_id, tuple(w.config.legal_entities or ()), w.config.lock_stale_after
    )
    try:
        lock.acquire()
    except PostingLocked as e:
        w.refuse(str(e))
        raise
    return lock


def abandon_dead_windows(db: StagingDB, window_id: str, now: datetime) -> None:
    """Windows (posting or revenue) a killed process left `running` become `abandoned`: those
    holding no lock row (a live window of another legal entity holds its own). Called by a
    window that holds its lock."""
    with db.begin() as conn:
        conn.execute(
            sa.text(
                """UPDATE posting_windows SET status = 'abandoned', finished_at = :now,
                       message = 'Process ended without finishing; settled by window ' || :w
                   WHERE status = 'running' AND window_id <> :w
                     AND window_id NOT IN (SELECT window_id FROM posting_lock
                                           WHERE holder IS NOT NULL AND window_id IS NOT NULL)"""
            ),
            {"now": now, "w": window_id},
        )


def _start(w: _Window) -> None:
    """Record the window as running; windows a killed process left `running` are abandoned (those
    holding no lock row: a live window of another legal entity holds its own)."""
    w.record("running")
    abandon_dead_windows(w.db, w.window_id, w.now)
    # Before the plan: the ledger may have grown by thousands of lines since the last
    # statistics (the previous window, or one killed half-way).
    _analyze_ledgers(w.db)


def _plan(w: _Window, plan_conn: sa.Connection, pending: PendingLines, out: _Outcome) -> None:
    """Plan on the window's connection and write the plan into the ledgers (new time lines
    wait in `pending`); a plan over `max_lines` is refused before anything is written."""
    max_lines = w.config.max_lines
    with plan_conn.begin():
        plan, out.summary, out.path = _plan_and_preview(plan_conn, w)
        out.counts.update(plan, lines_sendable=_sendable(plan))
        if max_lines is not None and out.counts["lines_sendable"] > max_lines:
            raise PlanTooLarge(
                f"The plan has {out.counts['lines_sendable']:,} lines to send, more than "
                f"max_lines {max_lines:,}: narrow the scope (legal entities, dates) "
                "or raise max_lines. Nothing was posted."
            )
        out.counts["voided"] = merge_plan(
            plan_conn, w.config.scope(), pending.track, defer_lines=True
        )


def _post(
    w: _Window, lock: WindowLock, out: _Outcome, plan_conn: sa.Connection, closing: _Closing
) -> None:
    """Settle, plan, send: the window's work while it holds the lock."""
    pending = PendingLines(
        plan_conn, track_params(w.window_id, w.config.run_id, w.launched_by, w.now)
    )
    _start(w)
    out.counts.update(settle_sent(w.db, w.erp, w.call, w.config.legal_entities))
    _plan(w, plan_conn, pending, out)
    w.hook("planned")
    try:
        # Batches of a few thousand rows: one DuckDB thread spends less than two on them,
        # and leaves a core to the ERP and this process while they overlap.
        with w.db.threads(1):
            out.counts.update(
                send_batches(
                    w.db,
                    w.erp,
                    w.window_id,
                    lock,
                    w.call,
                    w.hooks,
                    pending,
                    # The master data goes to the ERP while the first batch is written into
                    # the ledger; the ledgers' statistics (the lines are all there; their
                    # states do not matter) and most closing counts are taken while the ERP
                    # books the last batch.
                    before_first=partial(w.call, partial(_ensure_master_data, w.db, w.erp)),
                    written=closing.written,
                )
            )
        # Intercompany pairs follow the customer lines just confirmed (docs/intercompany.md).
        out.counts.update(
            post_intercompany(
                w.db,
                w.erp,
                w.window_id,
                lock,
                w.call,
                w.hooks,
                legal_entities=tuple(w.config.legal_entities or ()),
                accounts=w.config.intercompany_accounts,
                track=pending.track,
                closed_period_policy=w.config.closed_period_policy,
            )
        )
    except ErpUnavailable:
        # Stopping cleanly, still holding the lock: the new lines not sent go into the ledger
        # as planned, so finance sees what waits.
        pending.flush()
        raise


def _completed(out: _Outcome) -> None:
    c = out.counts
    out.status = "completed"
    out.message = (
        f"Posted {c['confirmed']:,} documents ({c['already_in_erp']:,} already in the ERP),"
        f" {c['rejected']:,} rejected by the ERP."
    )
    if c.get("invoice_post_held") or c.get("invoice_reversal_held"):
        out.message += (
            f" {c.get('invoice_post_held', 0) + c.get('invoice_reversal_held', 0):,} invoice"
            " documents held (billing hold or closed period)."
        )


def _stopped(out: _Outcome, attempts: int, error: ErpUnavailable) -> None:
    out.status = "stopped"
    out.message = (
        f"Stopped: the ERP stayed unavailable after {attempts} attempts ({error}). "
        "Unsent lines stay planned; run the window again to finish them."
    )


def _close_plan(plan_conn: sa.Connection | None) -> None:
    if plan_conn is not None:
        try:
            drop_plan(plan_conn)
        finally:
            plan_conn.close()


def _end(
    w: _Window,
    lock: WindowLock,
    out: _Outcome,
    plan_conn: sa.Connection | None,
    closing: _Closing,
) -> None:
    """Drop the plan, record how the window ended (with its ledger's counts), release the lock
    (even if recording fails)."""
    try:
        _close_plan(plan_conn)
        out.counts.update(closing.counts(completed=out.status == "completed"))
        w.finish(out)
    finally:
        lock.release()


def _run_locked(w: _Window, lock: WindowLock) -> WindowResult:
    """Post under the lock; whatever happens, the plan is dropped, the window's end recorded
    and the lock released."""
    out = _Outcome()
    closing = _Closing(w.db, w.window_id)
    plan_conn: sa.Connection | None = None
    try:
        # The plan's temporary tables live on this connection until the window ends.
        plan_conn = w.db.engine.connect()
        _post(w, lock, out, plan_conn, closing)
        _completed(out)
    except ErpUnavailable as e:
        _stopped(out, w.config.retry.attempts, e)
    except PlanTooLarge as e:
        out.status, out.message = "refused", str(e)
        raise
    except Exception as e:
        out.status, out.message = "failed", f"{type(e).__name__}: {e}"[:2000]
        raise
    finally:
        _end(w, lock, out, plan_conn, closing)
    return WindowResult(
        w.window_id,
        out.status,
        out.message,
        out.counts,
        out.summary,
        out.path,
        _rejections(w.db, w.window_id, out.counts),
        held_invoices(w.db, w.now.date()),
    )


def run_window(
    db: StagingDB,
    erp: ErpTarget,
    config: WindowConfig,
    *,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    hooks: Callable[[str, str], None] | None = None,
) -> WindowResult:
    """Run one posting window (or a dry run). Raises `PostingRefused` when it may not start."""
    now = now or datetime.now(UTC)
    _check_staging_free(db)
    w = _Window(
        db,
        erp,
        config,
        new_window_id(now),
        config.launched_by or _os_user(),
        now,
        config.retry.caller(sleep),
        hooks,
    )
    if config.dry_run:
        return _dry_run(w)
    _check_posting_hours(w)
    return _run_locked(w, _take_lock(w))


__all__ = [
    "PlanTooLarge",
    "PostingHoursClosed",
    "PostingLocked",
    "PostingRefused",
    "RetryPolicy",
    "WindowConfig",
    "WindowResult",
    "new_window_id",
    "run_window",
]
