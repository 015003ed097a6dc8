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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from config.posting_hours import describe_refusal, is_allowed, parse_posting_hours
from connectors.erp.base import (
    ErpTarget,
    ErpUnavailable,
)
from connectors.erp.retrying import RetryPolicy
from posting.lock import (
    DEFAULT_STALE_AFTER,
    PostingLock,
    PostingLocked,
    PostingLockLost,
    PostingRefused,
)
from posting.plan import (
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
from staging_models.db import StagingDB
from staging_models.ledger_tables import posting_windows

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
    posting_hours: str | Sequence[str] | None = None  # e.g. "mon-fri 17:00-20:00 Europe/Berlin"
    batch_size: int = 20_000
    invoice_batch_size: int = 500
    include_invoices: bool = True
    preview_dir: Path | None = None
    preview_detail_limit: int = DEFAULT_DETAIL_LIMIT
    run_id: str | None = None
    launched_by: str | None = None
    lock_stale_after: timedelta = DEFAULT_STALE_AFTER
    retry: RetryPolicy = field(default_factory=RetryPolicy)

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


# -- window records -------------------------------------------------------------------------------


def _record_window(
    db: StagingDB,
    window_id: str,
    config: WindowConfig,
    status: str,
    launched_by: str,
    now: datetime,
    message: str | None = None,
    counts: dict | None = None,
    finished: bool = False,
) -> None:
    with db.begin() as conn:
        conn.execute(
            posting_windows.insert().values(
                window_id=window_id,
                run_id=config.run_id,
                launched_by=launched_by,
                config=config.as_json(),
                status=status,
                note=config.note,
                override_reason=config.override_reason,
                message=message,
                started_at=now,
                finished_at=datetime.now(UTC) if finished else None,
                counts=json.dumps(counts, default=str) if counts is not None else None,
            )
        )


def _finish_window(
    db: StagingDB, window_id: str, status: str, message: str | None, counts: dict
) -> None:
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


# -- settling and sending -------------------------------------------------------------------------


def _ledger_state(db: StagingDB, window_id: str) -> dict[str, Any]:
    """Counts, hours and amounts per state of this window's ledger rows."""
    df = db.query_df(
        """SELECT 'time_line' AS doc, state, currency, COUNT(*) AS n, SUM(hours) AS hours,
                  SUM(amount) AS amount
           FROM posting_ledger WHERE window_id = :w GROUP BY state, currency
           UNION ALL
           SELECT 'invoice', state, currency, COUNT(*), NULL, SUM(total_amount)
           FROM invoice_ledger WHERE window_id = :w GROUP BY state, currency""",
        {"w": window_id},
    )
    out: dict[str, Any] = {}
    for (doc, state), g in df.groupby(["doc", "state"]):
        out[f"{doc}s_{state}"] = int(g["n"].sum())
    confirmed = df[df["state"] == "confirmed"]
    out["hours_confirmed"] = str(sum((h for h in confirmed["hours"] if h is not None), Decimal(0)))
    out["amount_confirmed"] = {
        cur: str(sum(g["amount"], Decimal(0))) for cur, g in confirmed.groupby("currency")
    }
    # Per document kind too: an invoice bills time already counted as time lines.
    for doc in ("time_line", "invoice"):
        mine = confirmed[confirmed["doc"] == doc]
        out[f"amount_confirmed_{doc}s"] = {
            cur: str(sum(g["amount"], Decimal(0))) for cur, g in mine.groupby("currency")
        }
    return out


def _rejections(db: StagingDB, window_id: str, limit: int = 1000) -> pd.DataFrame:
    return db.query_df(
        """SELECT * FROM (
               SELECT 'time_line' AS document, external_id, legal_entity, project_code, period,
                      erp_message FROM posting_ledger WHERE window_id = :w AND state = 'rejected'
               UNION ALL
               SELECT 'invoice', external_id, legal_entity, project_code, period, erp_message
               FROM invoice_ledger WHERE window_id = :w AND state = 'rejected') r
           ORDER BY external_id LIMIT :n""",
        {"w": window_id, "n": limit},
    )


# -- the window -----------------------------------------------------------------------------------


def _plan_and_preview(conn, erp, config, window_id, call, launched_by, now):
    build_plan(
        conn,
        erp,
        config.scope(),
        policy=config.closed_period_policy,
        batch_size=config.batch_size,
        invoice_batch_size=config.invoice_batch_size,
        fetch=call,
        include_invoices=config.include_invoices,
    )
    counts = plan_counts(conn)
    summary = plan_summary(conn)
    path = None
    if config.preview_dir is not None:
        total = int(summary["lines"].sum()) if not summary.empty else 0
        detail = plan_detail(conn, config.preview_detail_limit)
        kind = "Dry run" if config.dry_run else "Posting window"
        path = write_preview_xlsx(
            Path(config.preview_dir) / f"posting_preview_{window_id}.xlsx",
            summary,
            detail,
            total_lines=total,
            heading=f"{kind} {window_id} by {launched_by} at {now:%Y-%m-%d %H:%M %Z}",
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


def _analyze_ledgers(db: StagingDB) -> None:
    """PostgreSQL staging: fresh planner statistics for the ledgers (autovacuum may lag a
    window that just wrote thousands of lines, and stale ones lead the plan into nested
    loops). DuckDB keeps its statistics current."""
    if not db.is_duckdb:
        with db.begin() as conn:
            db.analyze(conn, "posting_ledger", "invoice_ledger")


def _sendable(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if k.endswith("_planned"))


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
    window_id = new_window_id(now)
    launched_by = config.launched_by or _os_user()
    call = config.retry.caller(sleep)

    if config.dry_run:
        with db.engine.connect() as conn:
            counts, summary, path = _plan_and_preview(
                conn, erp, config, window_id, call, launched_by, now
            )
            conn.rollback()  # only temporary tables were written; leave nothing behind
        counts = {**counts, "lines_sendable": _sendable(counts)}
        message = f"Dry run: {counts['lines_sendable']} lines would be posted; nothing was posted."
        _record_window(
            db, window_id, config, "dry_run", launched_by, now, message, counts, finished=True
        )
        return WindowResult(
            window_id,
            "dry_run",
            message,
            counts,
            summary,
            path,
        )

    rules = parse_posting_hours(config.posting_hours)
    if not is_allowed(rules, now) and not (config.override_reason or "").strip():
        message = describe_refusal(rules, now)
        _record_window(db, window_id, config, "refused", launched_by, now, message, finished=True)
        raise PostingHoursClosed(message)

    lock = PostingLock(db, window_id, stale_after=config.lock_stale_after)
    try:
        lock.acquire()
    except PostingLocked as e:
        _record_window(db, window_id, config, "refused", launched_by, now, str(e), finished=True)
        raise

    counts: dict[str, Any] = {}
    status, message = "failed", "failed"
    summary, path = pd.DataFrame(), None
    plan_conn: sa.Connection | None = None
    try:
        # The plan's temporary tables live on this connection until the window ends.
        plan_conn = db.engine.connect()
        pending = PendingLines(plan_conn, track_params(window_id, config.run_id, launched_by, now))
        _record_window(db, window_id, config, "running", launched_by, now)
        with db.begin() as conn:
            conn.execute(
                sa.text(
                    """UPDATE posting_windows SET status = 'abandoned', finished_at = :now,
                           message = 'Process ended without finishing; settled by window ' || :w
                       WHERE status = 'running' AND window_id <> :w"""
                ),
                {"now": now, "w": window_id},
            )
        # Before the plan: the ledger may have grown by thousands of lines since the last
        # statistics (the previous window, or one killed half-way).
        _analyze_ledgers(db)
        counts.update(settle_sent(db, erp, call))
        with plan_conn.begin():
            plan, summary, path = _plan_and_preview(
                plan_conn, erp, config, window_id, call, launched_by, now
            )
            counts.update(plan)
            counts["lines_sendable"] = _sendable(plan)
            if config.max_lines is not None and counts["lines_sendable"] > config.max_lines:
                raise PlanTooLarge(
                    f"The plan has {counts['lines_sendable']:,} lines to send, more than "
                    f"max_lines {config.max_lines:,}: narrow the scope (legal entities, dates) "
                    "or raise max_lines. Nothing was posted."
                )
            counts["voided"] = merge_plan(
                plan_conn, config.scope(), pending.track, defer_lines=True
            )
        if hooks:
            hooks("planned", "")
        # The ERP must know every customer, employee, project and task a line refers to.
        call(lambda: erp.ensure_master_data(*master_data_frames(db)))
        # Batches of a few thousand rows: one DuckDB thread spends less than two on them,
        # and leaves a core to the ERP and this process while they overlap.
        with db.threads(1):
            counts.update(send_batches(db, erp, window_id, lock, call, hooks, pending))
        status = "completed"
        message = (
            f"Posted {counts['confirmed']:,} documents"
            f" ({counts['already_in_erp']:,} already in the ERP),"
            f" {counts['rejected']:,} rejected by the ERP."
        )
    except ErpUnavailable as e:
        status = "stopped"
        message = (
            f"Stopped: the ERP stayed unavailable after {config.retry.attempts} attempts ({e}). "
            "Unsent lines stay planned; run the window again to finish them."
        )
    except PlanTooLarge as e:
        status, message = "refused", str(e)
        raise
    except (PostingLockLost, Exception) as e:
        status, message = "failed", f"{type(e).__name__}: {e}"[:2000]
        raise
    finally:
        try:
            if plan_conn is not None:
                try:
                    if status == "stopped":  # still holding the lock: show what waits, planned
                        pending.flush()
                    drop_plan(plan_conn)
                finally:
                    plan_conn.close()
            counts.update(_ledger_state(db, window_id))
            _finish_window(db, window_id, status, message, counts)
        finally:
            lock.release()
    return WindowResult(
        window_id, status, message, counts, summary, path, _rejections(db, window_id)
    )


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
