"""Status fed back to the PSA/CRM: per time entry, invoice and expense, what the ERP made of it.

After each posting window and each nightly reconciliation, `deliver_status` reads the ERP's
payment state of every live invoice (`ErpTarget.read_invoice_payments`) into a temporary
table, then delivers each feed of `status_feeds` through `staging_models.outbound` (changed
records only). The status of every record is computed set-based, in SQL, from the ledgers,
the current versions and that table:

- `time_entry_status` (key `entry_id`): `invoiced` (a live invoice of the ERP, not cancelled
  there, bills it: its ERP number and date), else `posted` (its live ERP document and
  period), else `held` (with the reason: a billing hold, a closed period), else `reversed`
  (posted once, reversed since), else `not_posted`;
- `invoice_status` (key `invoice_id`): the ERP's status of its live invoice (`posted`,
  `partially_paid`, `paid`, `cancelled`, ...) with number, amount and amount open, else `held`
  (with the hold's reason), `reversed` or `not_posted`;
- `expense_status` (key `expense_id`): `posted` (its live ERP expense line, period, amount and
  rebilled amount), else `held` (with the reason), `reversed` or `not_posted` (never
  `invoiced`: invoice proposals name no expense ids).

A feed is one `Feed` in `status_feeds`: a new source is one more entry there.
The format: docs/status_feedback.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pyarrow as pa

from connectors.erp.base import CANCELLED_INVOICE_STATUSES, ErpTarget
from connectors.erp.retrying import RetryPolicy
from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows
from staging_models.outbound import DeliveryResult, Feed, Targets, deliver, kept_temp

#: What `read_invoice_payments` returned for this delivery, on the delivering connection.
_ERP_INVOICES_SCHEMA = pa.schema(
    [
        ("external_id", pa.string()),
        ("erp_number", pa.string()),
        ("status", pa.string()),
        ("amount_open", pa.decimal128(18, 2)),
    ]
)

_CANCELLED = ", ".join(f"'{s}'" for s in CANCELLED_INVOICE_STATUSES)


def _live(ledger: str) -> str:
    """Confirmed posts of `ledger` no confirmed reversal cancels: what the ERP holds now."""
    rows = ledger_rows(ledger)
    return f"""SELECT p.* FROM {rows} p
        WHERE p.kind = 'post' AND p.state = 'confirmed'
          AND NOT EXISTS (SELECT 1 FROM {rows} r
                          WHERE r.kind = 'reversal' AND r.state = 'confirmed'
                            AND r.reverses_external_id = p.external_id)"""


def _reversed(ledger: str, group: str) -> str:
    return f"""SELECT {group}, MAX(external_id) AS reversal FROM {ledger_rows(ledger)} r
        WHERE r.kind = 'reversal' AND r.state = 'confirmed' GROUP BY {group}"""


def _time_entry_status(db: StagingDB) -> Feed:
    split = db.split_list_sql("v.entry_ids")
    rows = ledger_rows("posting_ledger")
    sql = f"""
    WITH held AS (
        SELECT entry_id, MIN(erp_message) AS reason FROM {rows} h
        WHERE h.state = 'held' GROUP BY entry_id
    ),
    billed_lines AS (
        SELECT s.invoice_id, TRIM(s.entry_id) AS entry_id FROM (
            SELECT v.invoice_id, {split} AS entry_id
            FROM validated_invoice_lines v
            JOIN stg_invoices c ON c.invoice_id = v.invoice_id AND c.line_no = v.line_no
                                AND c.version = v.version AND c.is_current AND c.state = 'valid'
            WHERE v.entry_ids IS NOT NULL) s
    ),
    billed AS (
        SELECT b.entry_id, i.invoice_id, f.erp_number, i.issue_date,
               ROW_NUMBER() OVER (PARTITION BY b.entry_id ORDER BY i.issue_date, i.invoice_id)
                   AS n
        FROM billed_lines b
        JOIN ({_live("invoice_ledger")}) i ON i.invoice_id = b.invoice_id
        JOIN fb_erp_invoices f ON f.external_id = i.external_id
        WHERE f.status NOT IN ({_CANCELLED})
    )
    SELECT c.row_key AS entry_id, c.version AS entry_version,
           CASE WHEN b.entry_id IS NOT NULL THEN 'invoiced'
                WHEN lv.external_id IS NOT NULL THEN 'posted'
                WHEN h.entry_id IS NOT NULL THEN 'held'
                WHEN rv.reversal IS NOT NULL THEN 'reversed'
                ELSE 'not_posted' END AS status,
           lv.external_id AS erp_document, lv.period AS erp_period,
           lv.entry_version AS posted_version,
           CASE WHEN lv.external_id IS NULL THEN rv.reversal END AS reversed_by,
           b.invoice_id, b.erp_number AS erp_invoice_number, b.issue_date AS invoice_date,
           h.reason AS hold_reason
    FROM stg_time_entries c
    LEFT JOIN ({_live("posting_ledger")}) lv ON lv.entry_id = c.row_key
    LEFT JOIN ({_reversed("posting_ledger", "entry_id")}) rv ON rv.entry_id = c.row_key
    LEFT JOIN billed b ON b.entry_id = c.row_key AND b.n = 1
    LEFT JOIN held h ON h.entry_id = c.row_key
    WHERE c.is_current"""
    return Feed("time_entry_status", ("entry_id",), sql)


def _invoice_status(db: StagingDB) -> Feed:
    rows = ledger_rows("invoice_ledger")
    sql = f"""
    WITH ids AS (
        SELECT DISTINCT invoice_id FROM stg_invoices
        WHERE is_current AND invoice_id IS NOT NULL
        UNION SELECT DISTINCT invoice_id FROM invoice_ledger
    ),
    held AS (
        SELECT invoice_id, MIN(erp_message) AS reason FROM {rows} h
        WHERE h.state = 'held' GROUP BY invoice_id
    )
    SELECT ids.invoice_id,
           CASE WHEN lv.external_id IS NOT NULL THEN COALESCE(f.status, 'posted')
                WHEN h.invoice_id IS NOT NULL THEN 'held'
                WHEN rv.reversal IS NOT NULL THEN 'reversed'
                ELSE 'not_posted' END AS status,
           lv.external_id AS erp_document, f.erp_number AS erp_invoice_number,
           lv.period AS erp_period, lv.issue_date AS invoice_date, lv.currency,
           lv.total_amount AS amount, f.amount_open,
           CASE WHEN lv.external_id IS NULL THEN rv.reversal END AS reversed_by,
           h.reason AS hold_reason
    FROM ids
    LEFT JOIN ({_live("invoice_ledger")}) lv ON lv.invoice_id = ids.invoice_id
    LEFT JOIN fb_erp_invoices f ON f.external_id = lv.external_id
    LEFT JOIN ({_reversed("invoice_ledger", "invoice_id")}) rv ON rv.invoice_id = ids.invoice_id
    LEFT JOIN held h ON h.invoice_id = ids.invoice_id"""
    return Feed("invoice_status", ("invoice_id",), sql)


def _expense_status(db: StagingDB) -> Feed:
    """Per current expense, as `time_entry_status` (posted, held with the reason, reversed,
    not posted). No `invoiced`: an invoice proposal's
    expense lines name no expense ids, so no invoice is linked to an expense."""
    rows = ledger_rows("expense_ledger")
    sql = f"""
    WITH held AS (
        SELECT expense_id, MIN(erp_message) AS reason FROM {rows} h
        WHERE h.state = 'held' GROUP BY expense_id
    )
    SELECT c.row_key AS expense_id, c.version AS expense_version,
           CASE WHEN lv.external_id IS NOT NULL THEN 'posted'
                WHEN h.expense_id IS NOT NULL THEN 'held'
                WHEN rv.reversal IS NOT NULL THEN 'reversed'
                ELSE 'not_posted' END AS status,
           lv.external_id AS erp_document, lv.period AS erp_period,
           lv.expense_version AS posted_version, lv.currency, lv.amount, lv.rebill_amount,
           CASE WHEN lv.external_id IS NULL THEN rv.reversal END AS reversed_by,
           h.reason AS hold_reason
    FROM stg_expenses c
    LEFT JOIN ({_live("expense_ledger")}) lv ON lv.expense_id = c.row_key
    LEFT JOIN ({_reversed("expense_ledger", "expense_id")}) rv ON rv.expense_id = c.row_key
    LEFT JOIN held h ON h.expense_id = c.row_key
    WHERE c.is_current"""
    return Feed("expense_status", ("expense_id",), sql)


#: The status feeds, in delivery order. A new source is one more builder here.
FEED_BUILDERS: tuple[Callable[[StagingDB], Feed], ...] = (
    _time_entry_status,
    _invoice_status,
    _expense_status,
)


def status_feeds(db: StagingDB) -> list[Feed]:
    return [build(db) for build in FEED_BUILDERS]


def deliver_status(
    db: StagingDB,
    erp: ErpTarget,
    targets: Targets,
    *,
    full_resend: bool = False,
    now: datetime | None = None,
    hooks: Callable[[str], None] | None = None,
    call: Callable | None = None,
) -> list[DeliveryResult]:
    """Read the ERP's invoice states, then deliver every status feed (changed records only,
    or everything with `full_resend`). `call` runs the ERP request (default: retried with
    backoff while the ERP is unavailable, as posting windows do)."""
    call = call or RetryPolicy().caller()
    with db.engine.connect() as conn:
        with conn.begin():
            ids = [
                r[0]
                for r in conn.exec_driver_sql(
                    f"SELECT external_id FROM ({_live('invoice_ledger')}) i"
                )
            ]
        states = call(lambda: erp.read_invoice_payments(ids)) if ids else None
        if states is None or states.empty:
            states = _ERP_INVOICES_SCHEMA.empty_table().to_pandas()
        with conn.begin():
            kept_temp(conn, "fb_erp_invoices", states, _ERP_INVOICES_SCHEMA)
        return [
            deliver(db, feed, targets, full_resend=full_resend, now=now, conn=conn, hooks=hooks)
            for feed in status_feeds(db)
        ]
