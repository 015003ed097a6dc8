"""journals (issue 17): revenue and WIP-accrual journal entries with their lines

`erp_journals` (the fields of `documents.JOURNAL`, the ERP's status and posting time) and
`erp_journal_lines` (`documents.JOURNAL_LINE`); see docs/erp_interface_tables.md and
docs/revenue.md. Tables only: nothing existing changes.
"""

from alembic import op

revision = "erp0005_journals"
down_revision = "erp0004_expense_lines"
branch_labels = None
depends_on = None

_TABLES = (
    """CREATE TABLE IF NOT EXISTS erp_journals (
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    reverses_external_id TEXT,
    journal_id TEXT NOT NULL,
    journal_version INTEGER NOT NULL,
    journal_type TEXT NOT NULL,
    legal_entity TEXT NOT NULL,
    currency TEXT NOT NULL,
    journal_date DATE NOT NULL,
    period TEXT NOT NULL,
    total_debit NUMERIC(18, 2) NOT NULL,
    status TEXT NOT NULL,
    posted_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    PRIMARY KEY (external_id)
)""",
    """CREATE TABLE IF NOT EXISTS erp_journal_lines (
    journal_external_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    account_code TEXT NOT NULL,
    project_code TEXT NOT NULL,
    line_role TEXT NOT NULL,
    debit NUMERIC(18, 2) NOT NULL,
    credit NUMERIC(18, 2) NOT NULL,
    description TEXT,
    PRIMARY KEY (journal_external_id, line_no)
)""",
)


def upgrade() -> None:
    for ddl in _TABLES:
        op.execute(ddl)


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
