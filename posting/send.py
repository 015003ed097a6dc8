"""Sending a window's planned batches to the ERP, and settling what a crash left `sent`.

Each batch is committed `sent` in the ledger before the ERP sees it and settled from the
ERP's answer after; a transient `ErpUnavailable` is retried by the caller's `call`
(`connectors.erp.retrying`).
The window (`posting.window`) decides what to send; this module only sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from connectors.erp.base import ErpTarget, PostResult
from connectors.erp.documents import INVOICE, INVOICE_LINE, TIME_LINE
from connectors.sql import fetch_frame, load_ids, load_temp
from posting.lock import (
    PostingLock,
)
from posting.plan import (
    PendingLines,
    mark_sent,
)
from staging_models.db import StagingDB

LOOKUP_CHUNK = 5_000


def settle_sent(db: StagingDB, erp: ErpTarget, call: Callable) -> dict[str, int]:
    """Lines a crashed window left `sent`: confirmed if the ERP has them, else planned again."""
    out = {"settled_confirmed": 0, "settled_requeued": 0}
    now = datetime.now(UTC)
    for ledger in ("posting_ledger", "invoice_ledger"):
        ids = db.query_df(f"SELECT external_id FROM {ledger} WHERE state = 'sent'")["external_id"]
        if ids.empty:
            continue
        found: set[str] = set()
        for i in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids.iloc[i : i + LOOKUP_CHUNK].tolist()
            found |= call(lambda c=chunk: erp.existing_external_ids(c))
        with db.begin() as conn:
            if found:
                load_ids(conn, "tmp_found", sorted(found))
                conn.execute(
                    sa.text(
                        f"""UPDATE {ledger} SET state = 'confirmed', settled_at = :now,
                                erp_message = 'Found in the ERP after an interrupted window'
                            WHERE state = 'sent'
                              AND external_id IN (SELECT external_id FROM tmp_found)"""
                    ),
                    {"now": now},
                )
            conn.execute(
                sa.text(
                    f"""UPDATE {ledger} SET state = 'planned', sent_at = NULL,
                            erp_message = 'Not in the ERP after an interrupted window'
                        WHERE state = 'sent'"""
                )
            )
        out["settled_confirmed"] += len(found)
        out["settled_requeued"] += len(ids) - len(found)
    return out


_OUTCOME_SCHEMA = pa.schema(
    [("external_id", pa.string()), ("state", pa.string()), ("message", pa.string())]
)


def _record_batch(
    db: StagingDB,
    lock: PostingLock,
    ledger: str,
    batch_id: str,
    ids: pd.Series,
    existing: set[str],
    result: PostResult,
) -> dict[str, int]:
    """Settle a batch: exceptions (rejected, already there, unanswered) from a small frame, the
    rest confirmed with one UPDATE. Unanswered lines stay `sent`: only a lookup may tell
    whether the ERP has them, so a `planned` line is never in the ERP."""
    answered = set(result.accepted) | set(result.rejected) | existing
    sent = pd.Series(ids.to_numpy(dtype=object))  # hashing Arrow strings goes one by one
    unanswered = sent[~sent.isin(answered)]
    parts = []
    if result.rejected:
        parts.append(
            pd.DataFrame(
                {
                    "external_id": list(result.rejected),
                    "state": "rejected",
                    "message": list(result.rejected.values()),
                }
            )
        )
    if existing:
        parts.append(
            pd.DataFrame(
                {
                    "external_id": sorted(existing),
                    "state": "confirmed",
                    "message": "Already in the ERP: an earlier attempt reached it",
                }
            )
        )
    if len(unanswered):
        parts.append(
            pd.DataFrame(
                {
                    "external_id": unanswered.to_numpy(dtype=object),
                    "state": "sent",
                    "message": "The ERP gave no answer for this line; the next window looks "
                    "it up before sending it again",
                }
            )
        )
    outcome = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    now = datetime.now(UTC)
    with db.begin() as conn:
        if not outcome.empty:
            load_temp(conn, "tmp_outcome", outcome, _OUTCOME_SCHEMA)
            conn.execute(
                sa.text(
                    f"""UPDATE {ledger} SET state = o.state, erp_message = o.message,
                            settled_at = CASE WHEN o.state = 'sent' THEN NULL ELSE :now END
                        FROM tmp_outcome o
                        WHERE {ledger}.external_id = o.external_id AND {ledger}.batch_id = :b
                          AND {ledger}.state = 'sent'"""
                ),
                {"now": now, "b": batch_id},
            )
        keep_sent = (
            " AND external_id NOT IN (SELECT external_id FROM tmp_outcome WHERE state = 'sent')"
            if len(unanswered)
            else ""
        )
        conn.execute(
            sa.text(
                f"""UPDATE {ledger} SET state = 'confirmed', settled_at = :now
                    WHERE batch_id = :b AND state = 'sent'{keep_sent}"""
            ),
            {"now": now, "b": batch_id},
        )
        lock.heartbeat(conn)
    return {
        "confirmed": len(result.accepted) + len(existing),
        "already_in_erp": len(existing),
        "rejected": len(result.rejected),
        "unanswered": len(unanswered),
    }


def _invoice_batches(db: StagingDB, window_id: str) -> list[str]:
    return db.query_df(
        "SELECT DISTINCT batch_id FROM invoice_ledger WHERE window_id = :w AND state = 'planned' "
        "AND batch_id IS NOT NULL ORDER BY batch_id",
        {"w": window_id},
    )["batch_id"].tolist()


def _mark_invoices_sent(db: StagingDB, batch_id: str) -> None:
    with db.begin() as conn:
        mark_sent(conn, "invoice_ledger", batch_id, datetime.now(UTC))


@dataclass
class _Batch:
    """A batch marked sent and read back; `post(look_up)` posts what the ERP lacks."""

    batch_id: str
    ids: pd.Series
    post: Callable[[bool], tuple[set[str], PostResult]]


def send_batches(
    db: StagingDB,
    erp: ErpTarget,
    window_id: str,
    lock: PostingLock,
    call: Callable,
    hooks: Callable[[str, str], None] | None,
    pending: PendingLines,
) -> dict[str, int]:
    """Send the window's planned batches, one batch ahead.

    The ERP requests run in this thread; every staging write runs, in order, in one
    worker thread (so DuckDB never sees two concurrent writers). While the ERP books
    batch n, the worker records the answer for batch n-1 (with the lock's heartbeat)
    and then writes batch n+1 into the ledger as `sent` and reads its lines (time lines:
    from the plan, `pending`; invoices: marked in, and read from, their ledger). Before
    each request the lock is checked (a read), so a window whose lock was taken over
    stops before sending more.
    A crash while batch n-1 is being recorded leaves it `sent`: the next window's
    settle finds it in the ERP and confirms it.

    The first attempt at a batch does not look its IDs up in the ERP: a `planned` line
    is never in the ERP. Lines become `planned` only when they are new to the ledger,
    were `rejected` (the ERP refused them), `held` or `void` (never sent), or were
    settled back after a lookup found them missing; a line handed to the ERP without
    a definite answer stays `sent` until a lookup settles it (the next window's
    settle, or this window's retry). And the window holds the lock, so nobody else
    sends. A retry after `ErpUnavailable` looks up first, because the failed attempt
    may have reached the ERP; both targets also refuse a second document with the
    same external ID.
    """
    totals = {"confirmed": 0, "already_in_erp": 0, "rejected": 0, "unanswered": 0, "batches": 0}
    # Optional target capabilities (attributes, not part of the ErpTarget API).
    arrow_frames = bool(getattr(erp, "accepts_arrow_frames", False))

    def step(name: str, b: str) -> None:
        if hooks:
            hooks(name, b)

    def time_lines(b: str) -> tuple[pd.Series, Callable]:
        lines = pending.lines(b, TIME_LINE.names, arrow_dtypes=arrow_frames)

        def post(existing: set[str]) -> PostResult:
            todo = lines[~lines["external_id"].isin(existing)] if existing else lines
            return erp.post_time_lines(todo) if len(todo) else PostResult()

        return lines["external_id"], post

    def invoices(b: str) -> tuple[pd.Series, Callable]:
        with db.engine.connect() as conn:
            heads = fetch_frame(
                conn,
                f"SELECT {', '.join(INVOICE.names)}, "
                "'released' AS status FROM invoice_ledger "
                "WHERE batch_id = :b AND state = 'sent' ORDER BY external_id",
                {"b": b},
            )
            lines = fetch_frame(
                conn,
                f"SELECT l.{', l.'.join(INVOICE_LINE.names)} FROM invoice_ledger_lines l "
                "JOIN invoice_ledger h ON h.external_id = l.invoice_external_id "
                "WHERE h.batch_id = :b AND h.state = 'sent' "
                "ORDER BY l.invoice_external_id, l.line_no",
                {"b": b},
            )

        def post(existing: set[str]) -> PostResult:
            todo = heads[~heads["external_id"].isin(existing)]
            todo_lines = lines[lines["invoice_external_id"].isin(todo["external_id"])]
            return erp.post_invoices(todo, todo_lines) if len(todo) else PostResult()

        return heads["external_id"], post

    def prepare(ledger: str, read: Callable, b: str) -> _Batch:
        if ledger == "posting_ledger":
            pending.write_sent(b, datetime.now(UTC))
        else:
            _mark_invoices_sent(db, b)
        step("batch_marked_sent", b)
        ids, post_missing = read(b)

        def post(look_up: bool) -> tuple[set[str], PostResult]:
            found = erp.existing_external_ids(ids.tolist()) if look_up else set()
            return found, post_missing(found)

        return _Batch(b, ids, post)

    def record(ledger: str, batch: _Batch, existing: set[str], result: PostResult) -> None:
        counts = _record_batch(db, lock, ledger, batch.batch_id, batch.ids, existing, result)
        for k, v in counts.items():
            totals[k] += v
        totals["batches"] += 1
        step("batch_recorded", batch.batch_id)

    recorded: list[Future] = []
    # On an exception the pool's exit waits for the queued staging writes: nothing is left
    # half-written behind the window's back.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="posting-staging") as pool:
        for ledger, read, batch_ids in (
            ("posting_ledger", time_lines, pending.batches()),
            ("invoice_ledger", invoices, None),
        ):
            if batch_ids is None:  # invoices were written into their ledger with the plan
                batch_ids = _invoice_batches(db, window_id)
            ahead = pool.submit(prepare, ledger, read, batch_ids[0]) if batch_ids else None
            for i, _ in enumerate(batch_ids):
                batch = ahead.result()
                ahead = (
                    pool.submit(prepare, ledger, read, batch_ids[i + 1])
                    if i + 1 < len(batch_ids)
                    else None
                )
                for done in recorded:  # a failed record (e.g. the lock lost) stops the window
                    if done.done():
                        done.result()
                lock.check()
                attempt = {"n": 0}

                def post_once(batch: _Batch = batch, attempt: dict = attempt):
                    # The first attempt needs no lookup: the batch was `planned` until this
                    # window marked it sent, so no line of it can be in the ERP (see
                    # `_send`). A retry looks up, since a failed attempt may have reached
                    # the ERP (lost response).
                    attempt["n"] += 1
                    return batch.post(attempt["n"] > 1)

                existing, result = call(post_once)
                step("batch_posted", batch.batch_id)
                recorded.append(pool.submit(record, ledger, batch, existing, result))
        for done in recorded:
            done.result()
    return totals
