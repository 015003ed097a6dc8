"""CRM deals and project set-up (schema_meta version 10): crm_deals, project_templates, deal_setups

Tables only (nothing existing changes): the landing and versions tables of the two new
datasets (`crm_deals`: won deals become projects; `project_templates`: the tasks a project
starts with) and `deal_setups` (one row per deal: its set-up ledger and status, see
`staging_models/deal_tables.py`).
"""

from alembic import op

revision = "0010_crm_deals"
down_revision = "0009_assignments"
branch_labels = None
depends_on = None

_TABLES = (
    """CREATE TABLE IF NOT EXISTS land_project_templates (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    template_code TEXT,
    task_code TEXT,
    task_name TEXT,
    billable BOOLEAN,
    raw_billable TEXT,
    PRIMARY KEY (load_id, row_no)
)""",
    """CREATE TABLE IF NOT EXISTS stg_project_templates (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    template_code TEXT,
    task_code TEXT,
    task_name TEXT,
    billable BOOLEAN,
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (row_key, version)
)""",
    """CREATE TABLE IF NOT EXISTS land_crm_deals (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    deal_id TEXT,
    deal_name TEXT,
    stage TEXT,
    won_at TIMESTAMP WITH TIME ZONE,
    customer_id TEXT,
    customer_name TEXT,
    legal_entity TEXT,
    currency TEXT,
    billing_method TEXT,
    contract_value NUMERIC(18, 2),
    budget_hours NUMERIC(10, 4),
    start_date DATE,
    end_date DATE,
    project_manager TEXT,
    template_code TEXT,
    updated_at TIMESTAMP WITH TIME ZONE,
    raw_won_at TEXT,
    raw_contract_value TEXT,
    raw_budget_hours TEXT,
    raw_start_date TEXT,
    raw_end_date TEXT,
    raw_updated_at TEXT,
    PRIMARY KEY (load_id, row_no)
)""",
    """CREATE TABLE IF NOT EXISTS stg_crm_deals (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    deal_id TEXT,
    deal_name TEXT,
    stage TEXT,
    won_at TIMESTAMP WITH TIME ZONE,
    customer_id TEXT,
    customer_name TEXT,
    legal_entity TEXT,
    currency TEXT,
    billing_method TEXT,
    contract_value NUMERIC(18, 2),
    budget_hours NUMERIC(10, 4),
    start_date DATE,
    end_date DATE,
    project_manager TEXT,
    template_code TEXT,
    updated_at TIMESTAMP WITH TIME ZONE,
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (row_key, version)
)""",
    """CREATE TABLE IF NOT EXISTS deal_setups (
    deal_id TEXT NOT NULL,
    project_code TEXT,
    sending_version INTEGER,
    applied_version INTEGER,
    customer_id TEXT,
    legal_entity TEXT,
    currency TEXT,
    template_code TEXT,
    customer_external_id TEXT,
    project_external_id TEXT,
    erp_customer_id TEXT,
    erp_project_id TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    psa_file TEXT,
    psa_version INTEGER,
    run_id TEXT,
    set_up_at TIMESTAMP WITH TIME ZONE,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (deal_id)
)""",
)


def upgrade() -> None:
    for ddl in _TABLES:
        op.execute(ddl)
    op.execute("UPDATE schema_meta SET value = '10' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
