"""expense lines: the ERP's table of posted expense lines (issue 16)

`erp_expense_lines` holds the fields of `documents.EXPENSE_LINE` and when the ERP booked
each line; a reversal is a line of its own that names the line it cancels. New table only.
"""

from alembic import op

revision = "erp0004_expense_lines"
down_revision = "erp0003_customers_projects"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE IF NOT EXISTS erp_expense_lines (
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    reverses_external_id TEXT,
    expense_id TEXT NOT NULL,
    expense_version INTEGER NOT NULL,
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
    posted_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    PRIMARY KEY (external_id)
)"""
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_erp_expense_lines_expense_date "
            "ON erp_expense_lines (expense_date)"
        )


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
