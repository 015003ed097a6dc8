"""erp_invoice_payments: payments the ERP recorded against an invoice

The ERP's cash application writes them; stagepost reads them (`read_invoice_payments`) to
feed each invoice's amount open and paid status back to the PSA/CRM (issue 16). A new table,
nothing existing changes.
"""

from alembic import op

revision = "erp0002_payments"
down_revision = "erp0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE IF NOT EXISTS erp_invoice_payments (
    payment_id TEXT NOT NULL,
    invoice_external_id TEXT NOT NULL,
    paid_on DATE NOT NULL,
    amount NUMERIC(18, 2) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (payment_id)
)"""
    )


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
