"""Tables written by the contracts: validated rows, the quarantine and its audit trail.

Posting reads only `validated_*` tables; every current row version that is not
validated is in the quarantine (with every rule it broke), superseded, or not
postable (see `stg_*.state`).
"""

from __future__ import annotations

import sqlalchemy as sa

from staging_models.tables import metadata

_money = sa.Numeric(18, 2)
_hours = sa.Numeric(10, 4)
_rate = sa.Numeric(14, 4)
_ts = sa.DateTime(timezone=True)

validated_time_entries = sa.Table(
    "validated_time_entries",
    metadata,
    sa.Column("entry_id", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.Text, nullable=False),
    sa.Column("legal_entity", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("employee_id", sa.Text, nullable=False),
    sa.Column("employee_name", sa.Text),
    sa.Column("project_code", sa.Text, nullable=False),
    sa.Column("task_code", sa.Text, nullable=False),
    sa.Column("work_date", sa.Date, nullable=False),
    sa.Column("hours", _hours, nullable=False),
    sa.Column("billable", sa.Boolean, nullable=False),
    sa.Column("bill_rate", _rate, nullable=False),  # resolved: the entry's, else the rate card's
    sa.Column("rate_source", sa.Text, nullable=False),  # entry | rate_card | none (non-billable)
    sa.Column(
        "amount", _money, nullable=False
    ),  # round(hours * rate, 2) once, here; 0 if not billable
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("approved_at", _ts),
    sa.Column("validated_at", _ts, nullable=False),
    # Intercompany entries (docs/intercompany.md; revision 0014): the employee's legal entity
    # when it is not the project's, the transfer rate (employee's currency), the receivable in
    # the employee's currency and the payable in the project's, and the exchange rate that
    # converted it (its date, whether the inverse pair was divided by, its source). NULL for
    # every other entry.
    sa.Column("ic_legal_entity", sa.Text),
    sa.Column("ic_transfer_rate", _rate),
    sa.Column("ic_rec_currency", sa.Text),
    sa.Column("ic_rec_amount", _money),
    sa.Column("ic_pay_currency", sa.Text),
    sa.Column("ic_pay_amount", _money),
    sa.Column("ic_fx_rate", sa.Numeric(18, 8)),
    sa.Column("ic_fx_rate_date", sa.Date),
    sa.Column("ic_fx_inverse", sa.Boolean),
    sa.Column("ic_fx_source", sa.Text),
)

validated_invoice_lines = sa.Table(
    "validated_invoice_lines",
    metadata,
    sa.Column("invoice_id", sa.Text, nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.Text, nullable=False),
    sa.Column("legal_entity", sa.Text, nullable=False),
    sa.Column("project_code", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("due_date", sa.Date),
    sa.Column("status", sa.Text, nullable=False),  # draft | released | cancelled
    sa.Column("line_kind", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("quantity", sa.Numeric(14, 4), nullable=False),
    sa.Column("unit_price", _rate, nullable=False),
    sa.Column("amount", _money, nullable=False),
    sa.Column("entry_ids", sa.Text),
    sa.Column("validated_at", _ts, nullable=False),
)

#: Valid expenses as posted: `rebill_amount` = amount x (1 + markup_percent / 100), rounded
#: half up to the cent once, here (0 when not billable).
validated_expenses = sa.Table(
    "validated_expenses",
    metadata,
    sa.Column("expense_id", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.Text, nullable=False),
    sa.Column("legal_entity", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("employee_id", sa.Text, nullable=False),
    sa.Column("project_code", sa.Text, nullable=False),
    sa.Column("task_code", sa.Text),
    sa.Column("expense_date", sa.Date, nullable=False),
    sa.Column("category", sa.Text, nullable=False),  # lower case, as configured
    sa.Column("amount", _money, nullable=False),
    sa.Column("tax_amount", _money, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("billable", sa.Boolean, nullable=False),
    sa.Column("reimbursable", sa.Boolean, nullable=False),
    sa.Column("markup_percent", _rate, nullable=False),
    sa.Column("rebill_amount", _money, nullable=False),
    sa.Column("receipt_ref", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("approved_at", _ts),
    sa.Column("validated_at", _ts, nullable=False),
)


def _unique_on_postgresql(table: sa.Table, *cols: str) -> None:
    """Validated tables are derived copies, unique by construction (one row per valid version).
    DuckDB pays twice the insert time for an index, so only PostgreSQL gets one."""
    sa.event.listen(
        table,
        "after_create",
        sa.DDL(
            f"CREATE UNIQUE INDEX IF NOT EXISTS ux_{table.name} ON {table.name} ({', '.join(cols)})"
        ).execute_if(dialect="postgresql"),
    )


_unique_on_postgresql(validated_time_entries, "entry_id", "version")
_unique_on_postgresql(validated_invoice_lines, "invoice_id", "line_no", "version")
_unique_on_postgresql(validated_expenses, "expense_id", "version")

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("row_key", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("load_id", sa.Text, nullable=False),
    sa.Column("source_file", sa.Text),
    sa.Column("row_no", sa.Integer, nullable=False),
    sa.Column("rule_codes", sa.Text, nullable=False),  # comma-separated, sorted
    sa.Column("messages", sa.Text, nullable=False),  # one sentence per rule, "; "-separated
    sa.Column("raw_values", sa.Text),  # JSON object of the row as read
    sa.Column("first_seen", _ts, nullable=False),
    sa.Column("last_seen", _ts, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # open | released | ignored
    sa.Column("status_reason", sa.Text),
    sa.Column("status_by", sa.Text),
    sa.Column("status_at", _ts),
    sa.PrimaryKeyConstraint("dataset", "row_key", "version"),
)

quarantine_violations = sa.Table(
    "quarantine_violations",
    metadata,
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("row_key", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("rule_code", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("dataset", "row_key", "version", "rule_code"),
)

quarantine_events = sa.Table(
    "quarantine_events",
    metadata,
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("row_key", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("event", sa.Text, nullable=False),  # quarantined | released | ignored | reopened
    sa.Column("event_at", _ts, nullable=False),
    sa.Column("actor", sa.Text),  # run id or operator
    sa.Column("reason", sa.Text),
)
