"""A batch's fate, written once for the batch (`posting_batches`), not once per line.

A batch's lines enter the ledger `sent` (or are marked so) in the same commit as its
`posting_batches` row, before the ERP sees them. When the ERP answered for every line,
one row changes: the batch becomes `confirmed`, and with it every line of it still
`sent` (see `staging_models.ledger_tables.ledger_rows`); the exceptions (rejected,
already in the ERP) are written per line. A batch with lines left unanswered keeps them
`sent` per line: it is confirmed line by line and marked `failed`, as is a batch whose
answer a crash lost once the next window settled its lines.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from staging_models.ledger_tables import posting_batches

_DOCUMENT = {
    "posting_ledger": "time_line",
    "invoice_ledger": "invoice",
    "expense_ledger": "expense_line",
    "journal_ledger": "journal",
}


def open_batch(
    conn: Connection, ledger: str, batch_id: str, window_id: str, lines: int, sent_at: datetime
) -> None:
    """Record batch `batch_id` as `sent` (in the caller's transaction, with its lines)."""
    conn.execute(
        posting_batches.insert().values(
            batch_id=batch_id,
            document=_DOCUMENT[ledger],
            window_id=window_id,
            state="sent",
            lines=lines,
            sent_at=sent_at,
        )
    )


def confirm_batch(conn: Connection, batch_id: str, now: datetime) -> None:
    """The ERP answered for every line: the batch's lines still `sent` are confirmed."""
    conn.execute(
        posting_batches.update()
        .where(posting_batches.c.batch_id == batch_id)
        .values(state="confirmed", settled_at=now)
    )


def confirm_lines(conn: Connection, ledger: str, batch_id: str, now: datetime, keep: str) -> None:
    """Some lines stay unanswered (`keep`: SQL of their external ids): confirm the others line
    by line and mark the batch `failed` (its lines are settled one by one)."""
    conn.execute(
        sa.text(
            f"""UPDATE {ledger} SET state = 'confirmed', settled_at = :now
                WHERE batch_id = :b AND state = 'sent' AND external_id NOT IN ({keep})"""
        ),
        {"now": now, "b": batch_id},
    )
    fail_batches(conn, now, batch_id)


def fail_batches(conn: Connection, now: datetime, batch_id: str | None = None) -> None:
    """Batch `batch_id`, or else every batch still `sent` none of whose lines is still `sent`
    (settled one by one after a crash): `failed`. A batch another window is sending (an
    entity window runs beside others) has its lines `sent`, in the same commit as its row,
    until its answer is recorded: it is left alone."""
    upd = posting_batches.update().where(posting_batches.c.state == "sent")
    if batch_id is not None:
        upd = upd.where(posting_batches.c.batch_id == batch_id)
    else:
        for ledger in _DOCUMENT:
            upd = upd.where(
                sa.text(
                    f"NOT EXISTS (SELECT 1 FROM {ledger} l "
                    "WHERE l.batch_id = posting_batches.batch_id AND l.state = 'sent')"
                )
            )
    conn.execute(upd.values(state="failed", settled_at=now))


__all__ = ["confirm_batch", "confirm_lines", "fail_batches", "open_batch"]
