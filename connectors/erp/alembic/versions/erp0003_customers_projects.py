"""projects set up from won CRM deals: the set-up's fields on erp_projects

A project set up from a deal (`posting.deal_setup`) carries its billing method, dates, budget
hours, contract value, manager and the deal it came from, and when a later version of the deal
last changed them (`updated_at`); projects made as posting master data leave them empty.
Nullable columns appended to erp_projects (as a fresh database has them, see
`connectors.erp.documents.PROJECT`); nothing existing changes.
"""

from alembic import op

revision = "erp0003_customers_projects"
down_revision = "erp0002_payments"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("billing_method", "TEXT"),
    ("start_date", "DATE"),
    ("end_date", "DATE"),
    ("budget_hours", "NUMERIC(10, 4)"),
    ("contract_value", "NUMERIC(18, 2)"),
    ("project_manager", "TEXT"),
    ("deal_id", "TEXT"),
    ("updated_at", "TIMESTAMP WITH TIME ZONE"),
)


def upgrade() -> None:
    for name, sql_type in _COLUMNS:
        op.execute(f"ALTER TABLE erp_projects ADD COLUMN IF NOT EXISTS {name} {sql_type}")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
