"""The posting ledger: what stagepost planned, sent and got confirmed in the ERP, line by line.

The ledger is the staging side of idempotency. Every ERP document has a
deterministic external ID (entry identity, version and kind), so a line is in
the ledger once whatever happens; its `state` says how far it got:

    planned -> sent -> confirmed | rejected      held (closed period, policy hold)
    planned | held -> void                       (superseded before it reached the ERP)

`sent` means "handed to the ERP, answer not recorded": a crash leaves lines
there, and the next window settles them by looking their external IDs up in
the ERP before it sends anything. Time lines and invoices have separate ledgers
(`posting_ledger`, `invoice_ledger`) because their documents differ; both share
the states, windows and the lock.

A batch the ERP answered in full is confirmed once, in `posting_batches`, not line by
line: its lines keep the `sent` they were written with, and a line's state is
`confirmed` when it is `sent` and its batch is `confirmed` (`ledger_rows` gives every
reader that state). The exceptions of a batch (rejected, already in the ERP,
unanswered) are still written per line. Rows written before the batches table (and
lines of a batch that was never confirmed as a whole) have no confirmed batch: their
own state is their state, so old ledgers read as they always did.
"""

from __future__ import annotations

import sqlalchemy as sa

from connectors.erp.documents import (
    EXPENSE_LINE,
    INVOICE,
    INVOICE_LINE,
    JOURNAL,
    JOURNAL_LINE,
    TIME_LINE,
    Document,
)
from staging_models.tables import metadata

_ts = sa.DateTime(timezone=True)


def _tracking() -> list[sa.Column]:
    """Columns every ledger row carries: state, ERP answer and where it was posted from."""
    return [
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("erp_message", sa.Text),  # rejection, hold or void reason
        sa.Column("batch_id", sa.Text),
        sa.Column("window_id", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("launched_by", sa.Text),
        sa.Column("planned_at", _ts, nullable=False),
        sa.Column("sent_at", _ts),
        sa.Column("settled_at", _ts),
    ]


def ledger_order(doc: Document) -> tuple[str, ...]:
    """A document's fields in its ledger's column order (release 1's): the reversal link after
    the document's source and version (`entry_id, entry_version`), not before them."""
    names = [n for n in doc.names if n != "reverses_external_id"]
    return (*names[:4], "reverses_external_id", *names[4:])


#: Time lines: the fields of `documents.TIME_LINE` (hours and amount negative on a reversal;
#: `period` is the one booked into, after the closed-period policy).
posting_ledger = sa.Table(
    "posting_ledger", metadata, *TIME_LINE.columns(ledger_order(TIME_LINE)), *_tracking()
)

#: Invoices: the fields of `documents.INVOICE` (`invoice_version`: the sum of the current line
#: versions, it grows whenever a line changes or is added) and how many lines it has.
invoice_ledger = sa.Table(
    "invoice_ledger",
    metadata,
    *INVOICE.columns(ledger_order(INVOICE)),
    sa.Column("line_count", sa.Integer, nullable=False),
    *_tracking(),
)

#: The lines of each ledger invoice, as sent (a credit note's lines are the negated originals).
invoice_ledger_lines = sa.Table("invoice_ledger_lines", metadata, *INVOICE_LINE.columns())

#: Expense lines: the fields of `documents.EXPENSE_LINE` (amounts negative on a reversal).
expense_ledger = sa.Table(
    "expense_ledger", metadata, *EXPENSE_LINE.columns(ledger_order(EXPENSE_LINE)), *_tracking()
)

#: Journals (revenue and WIP accruals, docs/revenue.md): the fields of `documents.JOURNAL`
#: (`journal_version`: 1, 2, ... per journal id; a new one reverses the version before) and
#: how many lines it has.
journal_ledger = sa.Table(
    "journal_ledger",
    metadata,
    *JOURNAL.columns(ledger_order(JOURNAL)),
    sa.Column("line_count", sa.Integer, nullable=False),
    *_tracking(),
)

#: The lines of each ledger journal, as sent (a reversal's: debit and credit swapped).
journal_ledger_lines = sa.Table("journal_ledger_lines", metadata, *JOURNAL_LINE.columns())

posting_windows = sa.Table(
    "posting_windows",
    metadata,
    sa.Column("window_id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text),
    sa.Column("launched_by", sa.Text),
    sa.Column("config", sa.Text, nullable=False),  # JSON of the window's settings
    # running | completed | stopped | failed | refused | dry_run | abandoned
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("note", sa.Text),  # the operator's note, as given
    sa.Column("override_reason", sa.Text),  # given to post outside the allowed hours
    sa.Column("message", sa.Text),  # the result: what was posted, or why it was refused
    sa.Column("started_at", _ts, nullable=False),
    sa.Column("finished_at", _ts),
    sa.Column("counts", sa.Text),  # JSON: planned, confirmed, rejected, held, ...
)

#: One row per batch a window handed to the ERP (time lines and invoices; the batch ids of
#: `posting.plan.ledger_batch_id` are unique across both): `sent` when committed before the
#: ERP sees it, `confirmed` when the ERP answered for every line (the lines still `sent`
#: are then confirmed), `failed` when its answer was never recorded as a whole (a crash, or
#: lines left unanswered) and its lines were settled one by one.
posting_batches = sa.Table(
    "posting_batches",
    metadata,
    sa.Column("batch_id", sa.Text, primary_key=True),
    sa.Column("document", sa.Text, nullable=False),  # time_line | invoice | expense_line | journal
    sa.Column("window_id", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # sent | confirmed | failed
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("sent_at", _ts, nullable=False),
    sa.Column("settled_at", _ts),
)

#: A line's state and settlement time, from its batch where the batch was confirmed whole.
_BATCH_STATE = (
    "CASE WHEN l.state = 'sent' AND b.state = 'confirmed' THEN 'confirmed' ELSE l.state END"
)
_BATCH_SETTLED = (
    "CASE WHEN l.state = 'sent' AND b.state = 'confirmed' THEN b.settled_at ELSE l.settled_at END"
)


def ledger_rows(ledger: str) -> str:
    """A parenthesised subquery of `ledger`'s rows, all its columns, with each line's state and
    `settled_at` as its batch makes them (see the module doc): alias it and read it wherever
    the ledger's states are read."""
    table = metadata.tables[ledger]
    cols = ", ".join(
        f"{_BATCH_STATE} AS state"
        if c.name == "state"
        else f"{_BATCH_SETTLED} AS settled_at"
        if c.name == "settled_at"
        else f"l.{c.name}"
        for c in table.c
    )
    return f"(SELECT {cols} FROM {ledger} l LEFT JOIN posting_batches b ON b.batch_id = l.batch_id)"


def still_sent(ledger: str) -> str:
    """SQL condition on `ledger`'s own rows (for an UPDATE): lines still `sent` as their batch
    says, i.e. their own state is `sent` and their batch was not confirmed whole."""
    return (
        f"{ledger}.state = 'sent' AND NOT EXISTS (SELECT 1 FROM posting_batches b "
        f"WHERE b.batch_id = {ledger}.batch_id AND b.state = 'confirmed')"
    )


posting_lock = sa.Table(
    "posting_lock",
    metadata,
    sa.Column("lock_name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text),  # host:pid:window_id; NULL when free
    sa.Column("window_id", sa.Text),
    sa.Column("acquired_at", _ts),
    sa.Column("heartbeat_at", _ts),
)

# PostgreSQL staging: batch and entry lookups. DuckDB scans columns; its indexes would only
# slow the state updates down.
sa.Index("ix_posting_ledger_batch", posting_ledger.c.batch_id).ddl_if(dialect="postgresql")
sa.Index("ix_posting_ledger_entry", posting_ledger.c.entry_id).ddl_if(dialect="postgresql")
sa.Index("ix_invoice_ledger_batch", invoice_ledger.c.batch_id).ddl_if(dialect="postgresql")
sa.Index("ix_expense_ledger_batch", expense_ledger.c.batch_id).ddl_if(dialect="postgresql")
# A window's own lines (its closing counts and rejections): without it each window scanned the
# whole ledger, every window before it included. One value per window: PostgreSQL keeps its
# entries deduplicated, so the index stays small and an insert lands on the same leaf page.
sa.Index("ix_posting_ledger_window", posting_ledger.c.window_id).ddl_if(dialect="postgresql")
sa.Index("ix_invoice_ledger_window", invoice_ledger.c.window_id).ddl_if(dialect="postgresql")
sa.Index("ix_expense_ledger_window", expense_ledger.c.window_id).ddl_if(dialect="postgresql")

# PostgreSQL: room on each page for the state updates (planned -> sent -> confirmed) to stay
# HOT (they change no indexed column, so no index maintenance). An event, not
# `postgresql_with`: duckdb-engine derives from the PostgreSQL dialect and would render it.
for _ledger in (posting_ledger, invoice_ledger, expense_ledger):
    sa.event.listen(
        _ledger,
        "after_create",
        sa.DDL(f"ALTER TABLE {_ledger.name} SET (fillfactor = 70)").execute_if(
            dialect="postgresql"
        ),
    )
