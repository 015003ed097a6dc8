"""expenses: a new canonical dataset, validated and posted as ERP expense lines (issue 16)

Landing and versions of `expenses` (`land_expenses`, `stg_expenses`, as every dataset's),
the valid versions as posted (`validated_expenses`, with the rebilled amount) and the
expense lines' posting ledger (`expense_ledger`, the fields of `documents.EXPENSE_LINE`).
New tables only: nothing existing changes. schema_meta version 11.
"""

from alembic import op

revision = "0011_expenses"
down_revision = "0010_crm_deals"
branch_labels = None
depends_on = None

_TS = "TIMESTAMP WITH TIME ZONE"
#: The dataset's columns, as landing and versions tables hold them (frozen here).
_EXPENSE_COLUMNS = f"""
    expense_id TEXT,
    employee_id TEXT,
    project_code TEXT,
    task_code TEXT,
    expense_date DATE,
    category TEXT,
    amount NUMERIC(18, 2),
    currency TEXT,
    tax_amount NUMERIC(18, 2),
    billable BOOLEAN,
    reimbursable BOOLEAN,
    markup_percent NUMERIC(14, 4),
    receipt_ref TEXT,
    approval_status TEXT,
    approved_at {_TS},
    approved_by TEXT,
    description TEXT,
    updated_at {_TS},
    deleted BOOLEAN,"""

_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS land_expenses (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,{_EXPENSE_COLUMNS}
    raw_expense_date TEXT,
    raw_amount TEXT,
    raw_tax_amount TEXT,
    raw_billable TEXT,
    raw_reimbursable TEXT,
    raw_markup_percent TEXT,
    raw_approved_at TEXT,
    raw_updated_at TEXT,
    raw_deleted TEXT,
    PRIMARY KEY (load_id, row_no)
)""",
    f"""CREATE TABLE IF NOT EXISTS stg_expenses (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,{_EXPENSE_COLUMNS}
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at {_TS} NOT NULL,
    PRIMARY KEY (row_key, version)
)""",
    f"""CREATE TABLE IF NOT EXISTS validated_expenses (
    expense_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    legal_entity TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    employee_id TEXT NOT NULL,
    project_code TEXT NOT NULL,
    task_code TEXT,
    expense_date DATE NOT NULL,
    category TEXT NOT NULL,
    amount NUMERIC(18, 2) NOT NULL,
    tax_amount NUMERIC(18, 2) NOT NULL,
    currency TEXT NOT NULL,
    billable BOOLEAN NOT NULL,
    reimbursable BOOLEAN NOT NULL,
    markup_percent NUMERIC(14, 4) NOT NULL,
    rebill_amount NUMERIC(18, 2) NOT NULL,
    receipt_ref TEXT,
    description TEXT,
    approved_at {_TS},
    validated_at {_TS} NOT NULL
)""",
    f"""CREATE TABLE IF NOT EXISTS expense_ledger (
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    expense_id TEXT NOT NULL,
    expense_version INTEGER NOT NULL,
    reverses_external_id TEXT,
    legal_entity TEXT NOT NULL,
    employee_id TEXT NOT NULL,
    project_code TEXT NOT NULL,
    task_code TEXT,
    expense_date DATE NOT NULL,
    period TEXT NOT NULL,
    category TEXT NOT NULL,
    amount NUMERIC(18, 2) NOT NULL,
    tax_amount NUMERIC(18, 2) NOT NULL,
    currency TEXT NOT NULL,
    billable BOOLEAN NOT NULL,
    reimbursable BOOLEAN NOT NULL,
    markup_percent NUMERIC(14, 4) NOT NULL,
    rebill_amount NUMERIC(18, 2) NOT NULL,
    receipt_ref TEXT,
    description TEXT,
    state TEXT NOT NULL,
    erp_message TEXT,
    batch_id TEXT,
    window_id TEXT NOT NULL,
    run_id TEXT,
    launched_by TEXT,
    planned_at {_TS} NOT NULL,
    sent_at {_TS},
    settled_at {_TS},
    PRIMARY KEY (external_id)
)""",
)


def upgrade() -> None:
    for sql in _TABLES:
        op.execute(sql)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS ux_validated_expenses "
            "ON validated_expenses (expense_id, version)"
        )
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_expense_ledger_batch ON expense_ledger (batch_id)"
        )
        op.execute("ALTER TABLE expense_ledger SET (fillfactor = 70)")
        # As 0013_pg_storage does for the ledgers and versions tables before expenses.
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_expense_ledger_window ON expense_ledger (window_id)"
        )
        op.execute("ALTER TABLE stg_expenses SET (fillfactor = 50)")
    op.execute("UPDATE schema_meta SET value = '11' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
