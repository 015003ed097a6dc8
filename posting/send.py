"""Sending a window's planned batches to the ERP, and settling what a crash left `sent`.

Each batch is committed `sent` in the ledger before the ERP sees it and settled from the
ERP's answer after; a transient `ErpUnavailable` is retried by the caller's `call`
(`connectors.erp.retrying`).
The window (`posting.window`) decides what to send; this module only sends it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import ClassVar

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from connectors.erp.base import ErpTarget, PostResult
from connectors.erp.documents import (
    EXPENSE_LINE,
    INVOICE,
    INVOICE_LINE,
    JOURNAL,
    JOURNAL_LINE,
    TIME_LINE,
    Document,
)
from connectors.sql import fetch_frame, load_ids, load_temp
from posting.batches import confirm_batch, confirm_lines, fail_batches, open_batch
from posting.lock import WindowLock
from posting.plan import PendingLines, mark_sent
from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows, still_sent

LOOKUP_CHUNK = 5_000
#: A batch's time lines as Arrow (read from PostgreSQL staging by COPY, see `fetch_frame`).
_TIME_LINE_SCHEMA = TIME_LINE.arrow_schema()


def settle_sent(
    db: StagingDB, erp: ErpTarget, call: Callable, legal_entities: Sequence[str] = ()
) -> dict[str, int]:
    """Lines a crashed window left `sent`: confirmed if the ERP has them, else planned again.

    Only those of `legal_entities` (all if none): a window of another entity may be sending
    its own lines at this moment (it holds that entity's lock), and they are its to settle."""
    out = {"settled_confirmed": 0, "settled_requeued": 0}
    now = datetime.now(UTC)
    params: dict = {f"le{i}": e for i, e in enumerate(legal_entities)}
    mine = f" AND legal_entity IN ({', '.join(':' + k for k in params)})" if params else ""
    for ledger in ("posting_ledger", "invoice_ledger", "expense_ledger", "journal_ledger"):
        ids = db.query_df(
            f"SELECT external_id FROM {ledger_rows(ledger)} l WHERE state = 'sent'{mine}", params
        )["external_id"]
        if ids.empty:
            continue
        found: set[str] = set()
        for i in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids.iloc[i : i + LOOKUP_CHUNK].tolist()
            found |= call(partial(erp.existing_external_ids, chunk))
        with db.begin() as conn:
            if found:
                load_ids(conn, "tmp_found", sorted(found))
                conn.execute(
                    sa.text(
                        f"""UPDATE {ledger} SET state = 'confirmed', settled_at = :now,
                                erp_message = 'Found in the ERP after an interrupted window'
                            WHERE {still_sent(ledger)}{mine}
                              AND external_id IN (SELECT external_id FROM tmp_found)"""
                    ),
                    {"now": now, **params},
                )
            conn.execute(
                sa.text(
                    f"""UPDATE {ledger} SET state = 'planned', sent_at = NULL,
                            erp_message = 'Not in the ERP after an interrupted window'
                        WHERE {still_sent(ledger)}{mine}"""
                ),
                params,
            )
        out["settled_confirmed"] += len(found)
        out["settled_requeued"] += len(ids) - len(found)
    with db.begin() as conn:
        fail_batches(conn, now)  # the batches whose lines were settled here (or never written)
    return out


_OUTCOME_SCHEMA = pa.schema(
    [("external_id", pa.string()), ("state", pa.string()), ("message", pa.string())]
)


def _record_batch(
    db: StagingDB,
    lock: WindowLock,
    ledger: str,
    batch_id: str,
    ids: pd.Series,
    existing: set[str],
    result: PostResult,
) -> dict[str, int]:
    """Settle a batch: exceptions (rejected, already there, unanswered) from a small frame, the
    rest confirmed with one UPDATE of its `posting_batches` row (`posting.batches`). Unanswered
    lines stay `sent`: only a lookup may tell
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
        if len(unanswered):
            keep = "SELECT external_id FROM tmp_outcome WHERE state = 'sent'"
            confirm_lines(conn, ledger, batch_id, now, keep)
        else:
            confirm_batch(conn, batch_id, now)
        lock.heartbeat(conn)
    return {
        "confirmed": len(result.accepted) + len(existing),
        "already_in_erp": len(existing),
        "rejected": len(result.rejected),
        "unanswered": len(unanswered),
    }


def _planned_batches(db: StagingDB, window_id: str, ledger: str) -> list[str]:
    """The batches of a ledger the plan wrote in whole (invoices, expense lines), in order."""
    return db.query_df(
        f"SELECT DISTINCT batch_id FROM {ledger} WHERE window_id = :w AND state = 'planned' "
        "AND batch_id IS NOT NULL ORDER BY batch_id",
        {"w": window_id},
    )["batch_id"].tolist()


@dataclass
class _TimeLineBatch:
    """A batch of time lines marked sent, read back from the plan."""

    ledger: ClassVar[str] = "posting_ledger"
    #: The `ErpTarget` method that creates the lines.
    post: ClassVar[str] = "post_time_lines"
    batch_id: str
    lines: pd.DataFrame

    @property
    def ids(self) -> pd.Series:
        return self.lines["external_id"]

    def post_missing(self, erp: ErpTarget, existing: set[str]) -> PostResult:
        """Post the lines the ERP does not hold (`existing`: those it does)."""
        todo = self.lines[~self.lines["external_id"].isin(existing)] if existing else self.lines
        return getattr(erp, self.post)(todo) if len(todo) else PostResult()


@dataclass
class _ExpenseLineBatch(_TimeLineBatch):
    """A batch of expense lines marked sent, read back from their ledger."""

    ledger: ClassVar[str] = "expense_ledger"
    post: ClassVar[str] = "post_expense_lines"


def _read_expense_batch(db: StagingDB, batch_id: str) -> _ExpenseLineBatch:
    with db.engine.connect() as conn:
        lines = fetch_frame(
            conn,
            f"SELECT {', '.join(EXPENSE_LINE.names)} FROM expense_ledger "
            "WHERE batch_id = :b AND state = 'sent' ORDER BY external_id",
            {"b": batch_id},
        )
    return _ExpenseLineBatch(batch_id, lines)


@dataclass
class _HeadedBatch:
    """A batch of documents with lines (invoices, journals) marked sent, read back from their
    ledger: the headers from `ledger`, their lines from `<ledger>_lines` by `parent`."""

    ledger: ClassVar[str]
    #: The lines' column naming their document, and the `ErpTarget` method that creates both.
    parent: ClassVar[str]
    post: ClassVar[str]
    documents: ClassVar[tuple[Document, Document]]
    #: Extra header columns the target reads, and the order headers are sent in.
    head_extra: ClassVar[str] = ""
    head_order: ClassVar[str] = "external_id"
    batch_id: str
    heads: pd.DataFrame
    lines: pd.DataFrame

    @property
    def ids(self) -> pd.Series:
        return self.heads["external_id"]

    def post_missing(self, erp: ErpTarget, existing: set[str]) -> PostResult:
        todo = self.heads[~self.heads["external_id"].isin(existing)]
        todo_lines = self.lines[self.lines[self.parent].isin(todo["external_id"])]
        return getattr(erp, self.post)(todo, todo_lines) if len(todo) else PostResult()

    @classmethod
    def read(cls, db: StagingDB, batch_id: str) -> _HeadedBatch:
        head, line = cls.documents
        with db.engine.connect() as conn:
            heads = fetch_frame(
                conn,
                f"SELECT {', '.join(head.names)}{cls.head_extra} FROM {cls.ledger} "
                f"WHERE batch_id = :b AND state = 'sent' ORDER BY {cls.head_order}",
                {"b": batch_id},
            )
            lines = fetch_frame(
                conn,
                f"SELECT l.{', l.'.join(line.names)} FROM {cls.ledger}_lines l "
                f"JOIN {cls.ledger} h ON h.external_id = l.{cls.parent} "
                "WHERE h.batch_id = :b AND h.state = 'sent' "
                f"ORDER BY l.{cls.parent}, l.line_no",
                {"b": batch_id},
            )
        return cls(batch_id, heads, lines)


@dataclass
class _InvoiceBatch(_HeadedBatch):
    ledger: ClassVar[str] = "invoice_ledger"
    parent: ClassVar[str] = "invoice_external_id"
    post: ClassVar[str] = "post_invoices"
    documents: ClassVar[tuple[Document, Document]] = (INVOICE, INVOICE_LINE)
    head_extra: ClassVar[str] = ", 'released' AS status"


@dataclass
class _JournalBatch(_HeadedBatch):
    ledger: ClassVar[str] = "journal_ledger"
    parent: ClassVar[str] = "journal_external_id"
    post: ClassVar[str] = "post_journals"
    documents: ClassVar[tuple[Document, Document]] = (JOURNAL, JOURNAL_LINE)
    #: Reversals before new versions, as the window always sent them.
    head_order: ClassVar[str] = "kind DESC, external_id"


_Batch = _TimeLineBatch | _HeadedBatch


@dataclass
class _PostAttempts:
    """One batch's request, as the retry calls it. The first attempt needs no lookup: the
    batch was `planned` until this window marked it sent, so no line of it can be in the ERP.
    A retry looks up first, since a failed attempt may have reached the ERP (lost response)."""

    batch: _Batch
    erp: ErpTarget
    made: int = 0

    def __call__(self) -> tuple[set[str], PostResult]:
        self.made += 1
        existing = (
            self.erp.existing_external_ids(self.batch.ids.tolist()) if self.made > 1 else set()
        )
        return existing, self.batch.post_missing(self.erp, existing)


def _raise_failed(futures: list[Future]) -> None:
    """Re-raise the error of a finished staging write (e.g. the lock lost): it stops the window."""
    for done in futures:
        if done.done():
            done.result()


_TOTALS = ("confirmed", "already_in_erp", "rejected", "unanswered", "batches")


@dataclass
class _Sender:
    """Sends a window's batches (see `send_batches`): ERP requests in the calling thread,
    staging writes in order in one worker thread."""

    db: StagingDB
    erp: ErpTarget
    lock: WindowLock
    call: Callable
    hooks: Callable[[str, str], None] | None
    pending: PendingLines
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TOTALS, 0))

    def _step(self, name: str, batch_id: str) -> None:
        if self.hooks:
            self.hooks(name, batch_id)

    # -- in the worker thread --------------------------------------------------------------

    def prepare_time_lines(self, batch_id: str) -> _TimeLineBatch:
        """Write the batch into the ledger as `sent` and read its lines from the plan."""
        self.pending.write_sent(batch_id, datetime.now(UTC))
        self._step("batch_marked_sent", batch_id)
        # An optional target capability (an attribute, not part of the ErpTarget API).
        arrow = bool(getattr(self.erp, "accepts_arrow_frames", False))
        lines = self.pending.lines(
            batch_id, TIME_LINE.names, arrow_dtypes=arrow, schema=_TIME_LINE_SCHEMA
        )
        return _TimeLineBatch(batch_id, lines)

    def _mark_sent(self, ledger: str, batch_id: str) -> None:
        """Mark a batch the plan wrote into `ledger` `sent`, with its batch row (one commit)."""
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            lines = mark_sent(conn, ledger, batch_id, now)
            open_batch(conn, ledger, batch_id, self.pending.track["w"], lines, now)
        self._step("batch_marked_sent", batch_id)

    def prepare_invoices(self, batch_id: str) -> _InvoiceBatch:
        """Mark the batch `sent` in the invoice ledger and read it back."""
        self._mark_sent("invoice_ledger", batch_id)
        return _InvoiceBatch.read(self.db, batch_id)

    def prepare_expense_lines(self, batch_id: str) -> _ExpenseLineBatch:
        """Mark the batch `sent` in the expense ledger and read it back."""
        self._mark_sent("expense_ledger", batch_id)
        return _read_expense_batch(self.db, batch_id)

    def prepare_journals(self, batch_id: str) -> _JournalBatch:
        """Mark the batch `sent` in the journal ledger and read it back."""
        self._mark_sent("journal_ledger", batch_id)
        return _JournalBatch.read(self.db, batch_id)

    def record(self, batch: _Batch, existing: set[str], result: PostResult) -> None:
        counts = _record_batch(
            self.db, self.lock, batch.ledger, batch.batch_id, batch.ids, existing, result
        )
        for k, v in counts.items():
            self.totals[k] += v
        self.totals["batches"] += 1
        self._step("batch_recorded", batch.batch_id)

    # -- in the calling thread -------------------------------------------------------------

    def send(
        self,
        pool: ThreadPoolExecutor,
        work: list[tuple[Callable[[str], _Batch], str]],
        recorded: list[Future],
        *,
        first: Future | None = None,
        written: Callable[[str | None], None] | None = None,
    ) -> None:
        """Send `work` (each batch id with the worker function that prepares it) one batch
        ahead: while the ERP books batch n, the worker records batch n-1 and prepares n+1.
        Before each request the lock is checked. `first`: the first batch, already being
        prepared; `written`: run in the worker once every batch is in the ledger, with the
        last one's id (None: no batch), while the ERP books it."""
        if not work:
            if written is not None:
                recorded.append(pool.submit(written, None))
            return
        ahead = first if first is not None else pool.submit(work[0][0], work[0][1])
        for nxt in [*work[1:], None]:
            batch = ahead.result()
            if nxt is not None:
                ahead = pool.submit(nxt[0], nxt[1])
            elif written is not None:
                recorded.append(pool.submit(written, batch.batch_id))
            _raise_failed(recorded)
            self.lock.check()
            existing, result = self.call(_PostAttempts(batch, self.erp))
            self._step("batch_posted", batch.batch_id)
            recorded.append(pool.submit(self.record, batch, existing, result))

    # -- in the worker thread, before the first batch -----------------------------------------

    def work(self, db: StagingDB, window_id: str) -> list[tuple[Callable[[str], _Batch], str]]:
        """Every batch of the window in sending order: time lines (from the plan), then
        invoices and expense lines (written into their ledgers with the plan)."""
        return [
            *((self.prepare_time_lines, b) for b in self.pending.batches()),
            *(
                (self.prepare_invoices, b)
                for b in _planned_batches(db, window_id, "invoice_ledger")
            ),
            *(
                (self.prepare_expense_lines, b)
                for b in _planned_batches(db, window_id, "expense_ledger")
            ),
        ]


def _prepare_first(work: Future) -> _Batch | None:
    """In the worker: the first batch of `work` (listed by the job before), prepared."""
    listed = work.result()
    return listed[0][0](listed[0][1]) if listed else None


def send_batches(
    db: StagingDB,
    erp: ErpTarget,
    window_id: str,
    lock: WindowLock,
    call: Callable,
    hooks: Callable[[str, str], None] | None,
    pending: PendingLines,
    *,
    before_first: Callable[[], None] | None = None,
    written: Callable[[str | None], None] | None = None,
) -> dict[str, int]:
    """Send the window's planned batches, time lines, invoices, then expense lines, one batch
    ahead.

    The ERP requests run in this thread; every staging write runs, in order, in one
    worker thread (so DuckDB never sees two concurrent writers). While the ERP books
    batch n, the worker records the answer for batch n-1 (with the lock's heartbeat)
    and then writes batch n+1 into the ledger as `sent` and reads its lines (time lines:
    from the plan, `pending`; invoices: marked in, and read from, their ledger). Before
    each request the lock is checked (a read), so a window whose lock was taken over
    stops before sending more.
    A crash while batch n-1 is being recorded leaves it `sent`: the next window's
    settle finds it in the ERP and confirms it.

    `before_first` runs in this thread while the worker lists the batches and prepares the
    first (the window's master data: an ERP request, which needs no batch); `written` runs
    in the worker once the last batch is in the ledger, with its id, while the ERP books it
    (or at once, with None, when there is no batch).

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
    sender = _Sender(db, erp, lock, call, hooks, pending)
    recorded: list[Future] = []
    # On an exception the pool's exit waits for the queued staging writes: nothing is left
    # half-written behind the window's back.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="posting-staging") as pool:
        work = pool.submit(sender.work, db, window_id)
        first = pool.submit(_prepare_first, work)
        if before_first is not None:
            before_first()
        sender.send(pool, work.result(), recorded, first=first, written=written)
        for done in recorded:
            done.result()
    return sender.totals


def send_journal_batches(
    db: StagingDB,
    erp: ErpTarget,
    window_id: str,
    lock: WindowLock,
    call: Callable,
    hooks: Callable[[str, str], None] | None,
    batch_ids: Sequence[str],
) -> dict[str, int]:
    """Send a revenue window's journal batches (written into their ledger with the plan), as
    `send_batches` sends invoices: each marked `sent` before the ERP sees it, one ahead."""
    # No time lines: the sender reads only the window id from `pending`.
    no_lines = PendingLines(None, {"w": window_id})  # type: ignore[arg-type]
    sender = _Sender(db, erp, lock, call, hooks, no_lines)
    recorded: list[Future] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="posting-staging") as pool:
        sender.send(pool, [(sender.prepare_journals, b) for b in batch_ids], recorded)
        for done in recorded:
            done.result()
    return sender.totals
